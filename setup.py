"""Installs learning_words: JAX/Flax "Learning Words by Drawing Images"."""
from setuptools import find_packages, setup

setup(
    name="learning_words",
    version="0.1.0",
    description="Learning Words by Drawing Images (CVPR 2019) in JAX/Flax NNX",
    python_requires=">=3.11",
    packages=find_packages(include=["learning_words", "learning_words.*"]),
    package_data={"learning_words": ["assets/**/*"]},  # the shipped generator(s)
    install_requires=[
        "jax",
        "flax",
        "optax",
        "orbax-checkpoint",
        "tensorflow-datasets",
        "grain",
        "array_record",
        "importlib_resources",  # tfds imports it for builders defined in a package, undeclared
        "numpy",
        "scipy",  # polyphase resampling (speech) and, later, clustering
        "soundfile",
        "absl-py",
        "ml_collections",
        "espeakng-loader",  # bundles libespeak-ng + data: offline TTS for the synthetic world
        "pillow",  # JPEG decoding of the official layout, PNG figures
        "matplotlib",  # the report's curves and intervals (Agg, off-screen)
        "tqdm",
        "tensorboardX",  # TensorBoard event files without TensorFlow (CLU's writers import it)
    ],
    extras_require={
        # PyTorch only for the benchmark's peer (and converting the reference's files); a CPU
        # machine is best served by the CPU wheel (pip's --index-url https://download.pytorch.org/whl/cpu).
        "torch": ["torch>=2"],
        "test": ["pytest", "pytest-xdist", "librosa", "torch"],
    },
)
