"""Installs learning_words: JAX/Flax "Learning Words by Drawing Images"."""
from setuptools import find_packages, setup

setup(
    name="learning_words",
    version="0.1.0",
    description="Learning Words by Drawing Images (CVPR 2019) in JAX/Flax NNX",
    python_requires=">=3.11",
    license="Apache-2.0",
    license_files=["LICENSE"],
    packages=find_packages(include=["learning_words", "learning_words.*"]),
    package_data={"learning_words": ["assets/**/*"]},  # the shipped generator(s)
    install_requires=[
        "jax>=0.10",
        "flax>=0.12",
        "optax>=0.2.8",
        "orbax-checkpoint>=0.12",
        "tensorflow-datasets>=4.9.10",
        "grain>=0.2.18",
        "array_record>=0.8",
        "importlib_resources>=6",  # tfds imports it for builders defined in a package, undeclared
        "numpy>=2",
        "scipy>=1.17",  # polyphase resampling (speech) and, later, clustering
        "soundfile>=0.14",
        "absl-py>=2",
        "ml_collections>=1.1",
        "espeakng-loader>=0.2.4",  # bundles libespeak-ng + data: offline TTS for the synthetic world
        "pillow>=11",  # JPEG decoding of the official layout, PNG figures
        "matplotlib>=3.10",  # the report's curves and intervals (Agg, off-screen)
        "scikit-learn>=1.6",  # the attribute probe's logistic regression
        "tqdm>=4.66",
        "tensorboardX>=2.6",  # TensorBoard event files without TensorFlow (CLU's writers import it)
    ],
    extras_require={
        # PyTorch only for the benchmark's peer (and converting the reference's files); a CPU
        # machine is best served by the CPU wheel (pip's --index-url https://download.pytorch.org/whl/cpu).
        "torch": ["torch>=2"],
        # JAX for an accelerator (the CPU build comes with the base install); with
        # -c launch/constraints.txt the plugin matches the pinned jax.
        "cuda": ["jax[cuda12]"],
        "tpu": ["jax[tpu]"],
        # gs:// workdirs: gcsfs (files through etils.epath, fsspec) and google-cloud-storage.
        "gcs": ["gcsfs>=2025.3", "google-cloud-storage>=3"],
        # The tests run gs:// workdirs against a local GCS emulator.
        "test": ["pytest", "pytest-xdist", "librosa", "torch", "gcsfs>=2025.3",
                 "google-cloud-storage>=3", "gcp-storage-emulator>=2025"],
    },
)
