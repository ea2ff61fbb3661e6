"""The Python API's inputs: each kind of image and recording either scores as its documented
equivalent or is refused with one clear InputError (never guessed, never NaN)."""
import numpy as np
import pytest
from flax import nnx

from configs import tiny
from learning_words.common import errors
from learning_words.evaluation import trained_run
from learning_words.models import encoders


@pytest.fixture(scope="module")
def run():
  config = tiny.get_config()
  models = encoders.Encoders(config.model, rngs=nnx.Rngs(0))
  models.eval()
  return trained_run.TrainedRun(config, models, 0, "nowhere")


def wave(seconds=1.0, rate=16_000):
  t = np.arange(int(seconds * rate)) / rate
  return (0.3 * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 3 * t)).astype(np.float32)


def test_integer_images_of_any_dtype_score_as_uint8(run):
  image = np.random.default_rng(0).integers(0, 256, (16, 16, 3))
  w = wave()
  as_uint8 = run.score(image.astype(np.uint8), w)
  assert np.isclose(run.score(image.astype(np.int64), w), as_uint8, atol=1e-5)
  assert np.isclose(run.score(image / 255.0, w), as_uint8, atol=1e-5)


@pytest.mark.parametrize("image, says", [
    (np.full((16, 16, 3), np.nan, np.float32), "NaN or infinite"),
    (np.zeros((0, 0, 3), np.uint8), "empty"),
    (np.full((16, 16, 3), 300, np.int64), "[0, 255]"),
    (np.full((16, 16, 3), 2.0), "[0, 1]"),
    (np.zeros((16, 16), np.uint8), "[H, W, 3]"),
])
def test_bad_images_are_refused(run, image, says):
  with pytest.raises(errors.InputError, match=None) as e:
    run.score(image, wave())
  assert says in str(e.value)


@pytest.mark.parametrize("rate", [0, -16000, 44100.7, float("nan")])
def test_bad_sample_rates_are_refused(run, rate):
  with pytest.raises(errors.InputError) as e:
    run.score(np.zeros((16, 16, 3), np.uint8), (wave(), rate))
  assert "sample rate" in str(e.value)


def test_a_whole_float_rate_resamples_like_the_int(run):
  image = np.zeros((16, 16, 3), np.uint8)
  w = wave(rate=8000)
  assert run.score(image, (w, 8000.0)) == run.score(image, (w, 8000))


def test_scipy_order_nan_and_long_recordings_are_refused(run):
  image = np.zeros((16, 16, 3), np.uint8)
  with pytest.raises(errors.InputError, match="sample_rate, waveform"):
    run.score(image, (16_000, wave()))
  with pytest.raises(errors.InputError, match="NaN"):
    run.score(image, np.full(1600, np.nan, np.float32))
  # tiny's eval_frames = 256 frames of 10 ms: of a 3 s recording (301 frames) the first 2.56 s
  # are scored, and the caller is told
  with pytest.warns(UserWarning, match="lasts 3.01 s; only its first 2.56 s are scored"):
    assert np.isfinite(run.score(image, wave(3.0)))


def test_a_stereo_array_is_the_mean_of_its_channels(run):
  image = np.random.default_rng(1).integers(0, 256, (16, 16, 3)).astype(np.uint8)
  left, right = wave(), wave() * 0.5
  stereo = np.stack([left, right], axis=1)
  assert np.isclose(run.score(image, stereo), run.score(image, (left + right) / 2), atol=1e-6)
  assert np.isclose(run.score(image, (stereo, 16_000)), run.score(image, (left + right) / 2),
                    atol=1e-6)


def test_a_run_is_evaluated_with_the_encoder_settings_it_was_trained_with(tmp_path):
  from configs import tiny  # pylint: disable=g-import-not-at-top
  from learning_words.evaluation import runner  # pylint: disable=g-import-not-at-top
  preset = tiny.get_config()
  assert runner.with_run_model(preset, str(tmp_path / "none")) is preset  # no kept config
  trained = preset.copy_and_resolve_references()
  trained.model.image_depths = (2, 2, 0, 0, 0)
  trained.model.image_embed_kernel = 1
  run = tmp_path / "small_cells"
  trained_run.write_run_config(str(run), trained)
  got = runner.with_run_model(preset, str(run))
  assert got.model.to_dict() == trained.model.to_dict()
  assert got.evals.to_dict() == preset.evals.to_dict() and preset.model.image_embed_kernel != 1
  trained_run.write_run_config(str(run), preset)  # the same settings: the preset itself
  assert runner.with_run_model(preset, str(run)) is preset
