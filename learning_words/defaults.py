"""Every config key the code reads, with its default; the presets in configs/ start from
`get_config()` and override (they import it from the installed package, so a preset loads from
any working directory).

Keys are grouped by pipeline stage (see docs/configs.md). Values here are the reference's where it
has one (docs/differences.md), so presets only state where they deviate.
"""
import importlib.util
import os

import ml_collections


def preset_beside(config_file: str, name: str) -> ml_collections.ConfigDict:
  """get_config() of the preset NAME.py in the folder of `config_file` (a preset that starts
  from another loads it by path, so it loads from any working directory)."""
  path = os.path.join(os.path.dirname(os.path.abspath(config_file)), f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"{name}_preset", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  # Synthetic world: rendered CLEVR-like scenes (learning_words/world/scenes.py).
  c.world = ml_collections.ConfigDict()
  c.world.resolution = 32          # px; any of 16..128
  c.world.min_objects = 1
  c.world.max_objects = 4
  c.world.num_train = 20_000       # rendered scenes for the GAN and the segmenter
  c.world.num_val = 1_000
  c.world.relation_prob = 0.5      # chance a caption adds a left/right/front/behind relation
  c.world.parse_min_pixels = 3     # smaller label regions are not objects (world/parse.py)
  # Where the pairs' images and captions come from (the ladder, world/pairs.py): 'renders' (L0,
  # ground-truth captions; train with data.positives='stored'), 'inverted' (L1: G of each
  # render's inverted latent, its ground-truth caption), 'inverted_parsed' (L2: the same images,
  # parsed captions) or 'prior' (L3: G(z_i), parsed captions, the reference's Audio CLEVRGAN).
  c.world.pairs = "prior"
  # With world.pairs='renders': each record also stores its oracle edits (world/edit_variants.py),
  # every object redrawn with one attribute changed and moved with its caption unchanged, for
  # negatives.mode='oracle', 'oracle_random' and 'oracle_null'.
  c.world.edit_variants = False
  # The inverted worlds' latents (world/invert.py): an encoder trained against the frozen
  # generator on the GAN's renders, then `invert_steps` Adam steps per render from its codes
  # (encoder_steps 0: from the best of `invert_starts` prior draws).
  c.world.invert_encoder_steps = 1500
  c.world.invert_encoder_batch = 32
  c.world.invert_encoder_lr = 1e-3
  c.world.invert_encoder_renders = 6000
  c.world.invert_latent_weight = 0.3  # weight of the prior draws' code cosine beside the redraw
  c.world.invert_steps = 0
  c.world.invert_starts = 16
  c.world.invert_lr = 0.05
  c.world.invert_batch = 250
  c.world.invert_fg_weight = 10.0  # object pixels weigh 1 + this in the pixel loss
  c.world.report_images = 1_000    # generated images the world report parses (ids past every split)
  c.world.report_edits = 200       # of which this many get edit diagnostics per layer

  # Speech: eSpeak NG voices drawn per caption (learning_words/world/speech.py).
  c.speech = ml_collections.ConfigDict()
  c.speech.voices = ("en-us", "en", "en-029", "en-gb-scotland", "en-gb-x-rp")
  c.speech.rate_range = (140, 200)     # words per minute
  c.speech.pitch_range = (30, 70)      # eSpeak pitch, 0..100
  c.speech.workers = 2                 # TTS worker processes

  # Image / spoken-caption data (learning_words/data).
  c.data = ml_collections.ConfigDict()
  c.data.source = "synthetic"      # 'synthetic' (built offline) or 'official' (manual_dir layout)
  c.data.official_dir = ""         # official Audio CLEVRGAN root: name_list_*.txt, audio/,
                                   # images/, text/
  c.data.official_variant = "synth"  # 'natural' or 'synth' captions
  c.data.image_size = 128          # stored image size for the official layout
  c.data.num_train = 5_000         # synthetic pairs per split (ids are split by range)
  c.data.num_val = 500
  c.data.num_test = 500
  c.data.on_bad_audio = "error"    # 'error': raise naming the file; 'skip': skip and count it
  c.data.train_frames = 1024       # spectrogram frames in training (random crop when longer)
  c.data.eval_frames = 2048        # spectrogram frames in evaluation
  c.data.batch_size = 32           # global batch, split over all devices and hosts
  c.data.worker_count = -1         # grain worker processes (featurisation); -1: from the host's
                                   # cores (input_pipeline.auto_workers)
  c.data.spec_cache_gb = 2.0       # training log-mels kept in host memory across epochs (per
                                   # host, shared by its workers); 0: recompute every epoch
  # Positive images in training and evaluation: 'generator' (G(z) redrawn from the pair's latent,
  # as the reference) or 'stored' (the record's image: the renders of L0; no edited negatives).
  c.data.positives = "generator"

  # GAN (learning_words/world/train_gan.py): the frozen generator that draws positives and
  # negatives.
  c.gan = ml_collections.ConfigDict()
  c.gan.sizes = (128, 128, 128, 64, 32)  # [z_dim, depth@4x4, @8x8, @16x16, @32x32] -> 32 px
  c.gan.d_sizes = (128, 128, 64, 32)     # discriminator / encoder depths at 4x4 .. R
  c.gan.batch_size = 32
  c.gan.steps = 40_624                   # shipped 32 px generator: 37,024 H200 steps + 3,600 CPU
                                         # fine-tune
  c.gan.lr = 1e-3                        # Adam, ProgGAN's
  c.gan.b1 = 0.0
  c.gan.b2 = 0.99
  c.gan.r1_gamma = 0.006                 # StyleGAN2-ADA heuristic 0.0002 * R^2 / batch at 32 px
  c.gan.r1_every = 16                    # lazy R1
  c.gan.ema_decay = 0.999
  # VAE-GAN L1 reconstruction (0: adversarial only). At 1.0 the encoder collapsed to a constant
  # (KL outweighed the L1 of small objects on a mostly grey image) and colours collapsed with it.
  # 30 and 100 both kept it informative; 100 came closer to the renders' colour and shape
  # distributions on validation ids (docs/weights.md).
  c.gan.recon_weight = 100.0
  c.gan.kl_weight = 1.0                  # KL(q(z|x) || N(0, I)), per pixel like the L1
  # Colour feature matching: TV between the prior drawings' soft (hue, saturation) histogram and
  # the renders' (world/colour_match.py), times this weight (0: off). The VAE-GAN alone left blue
  # and cyan nearly undrawn by prior samples (its reconstructions draw them); fine-tuning it with
  # this term (20, then 50, then 50 with saturation bands) brought the world report's colour TV
  # from 0.217 to 0.066 (docs/weights.md).
  c.gan.colour_weight = 50.0
  c.gan.log_every = 50
  c.gan.sample_every = 500
  c.gan.checkpoint_every = 500
  c.gan.retrain = False                  # True: train a new generator instead of the shipped one
  c.gan.intervention_layer = "layer6"    # where negatives are drawn (16x16 at 32 px)
  # The reference's generator.pth (ablate/proggan.py's layout): converted into WORKDIR/gan/official
  # by --mode=convert or the pipeline, its widths read from the file (they replace gan.sizes);
  # build_data then checks it against the official data: over the first `agreement_ids` train
  # ids, G(z_i) must be closer to images/<i>.jpg than to another id's image by agreement_min_gain
  # dB of mean PSNR (convert/agreement.py).
  c.gan.official_weights = ""
  c.gan.agreement_ids = 16
  c.gan.agreement_min_gain = 3.0
  c.gan.diagnose_layers = ("layer4", "layer6")  # layers the world report's edit diagnostics cover

  # Attribute segmenter (learning_words/world/train_segmenter.py): labels and checks GAN images.
  c.segmenter = ml_collections.ConfigDict()
  c.segmenter.widths = (32, 64, 96)      # U-Net channels at R, R/2, R/4
  c.segmenter.batch_size = 32
  c.segmenter.crop = 0                   # train on random crops of this side (0: whole renders)
  c.segmenter.steps = 2_000
  c.segmenter.lr = 2e-3                  # Adam, cosine-decayed to 0
  c.segmenter.log_every = 50
  c.segmenter.checkpoint_every = 500
  c.segmenter.retrain = False            # True: train a new segmenter instead of the shipped one

  # Encoders (learning_words/models/davenet.py): the reference's DAVEnet, widths configurable.
  c.model = ml_collections.ConfigDict()
  c.model.image_widths = (64, 128, 256, 512, 512)  # VGG16's five conv blocks
  c.model.image_pools = 4          # 128 px -> 8x8 feature map
  # The image convs' border: 'zeros' (the reference's VGG), 'reflect' or 'circular' (no constant
  # border signal from which to tell border cells from inner ones).
  c.model.image_padding = "zeros"
  c.model.image_depths = (2, 2, 3, 3, 3)  # convs per block: VGG16's
  c.model.image_embed_kernel = 3   # the last conv to embed_dim: 3x3 (reference); 1: per cell
  c.model.audio_kind = "large"
  c.model.audio_widths = (128, 256, 512)           # conv over mels, 1x11, then the 1x17 convs
  c.model.audio_kernel = 17        # time width of the convs after each pool (the reference's 17)
  c.model.embed_dim = 512
  c.model.audio_out_relu = True    # the speech encoder's last ReLU (the reference's); False:
  #                                  signed frames
  c.model.cosine = False           # matchmap by dot product (the reference's default)
  # Keep the speech encoder's frames past each recording's end at zero (and out of its
  # BatchNorm statistics): a padded caption is then encoded as at its own length, like the word
  # test's recordings (davenet.AudioEncoder). The reference feeds the padding through (False).
  c.model.mask_padding = False
  # The encoders' convolutions compute in this dtype: 'float32', or 'bfloat16' on GPUs / TPUs
  # (parameters, BatchNorm, embeddings, matchmaps and losses stay float32). On this CPU bfloat16
  # convolutions are slower than float32.
  c.model.dtype = "float32"

  # Loss (learning_words/learner/losses.py).
  c.loss = ml_collections.ConfigDict()
  c.loss.kind = "regular"          # regular | negatives_hard | negatives_edited | negatives_both
  c.loss.margin = 1.0
  c.loss.base = "triplet"          # 'triplet' (the reference's margin ranking) or 'softmax'
  c.loss.temperature = 0.07        # softmax base: logits = similarity / temperature
  # The edited term (differences from the reference, which weighs it 1 on the MISA means):
  c.loss.edited_weight = 1.0       # its weight in negatives_edited
  c.loss.edited_temperature = 0.0  # softmax base: its own temperature (0: loss.temperature)
  c.loss.edited_score = "misa"     # 'misa' (the two MISA means), 'frames' (frame by frame),
  #                                  'word' (the edited word's frames only; oracle negatives) or
  #                                  'peak' (the frames whose best cell lies on the edit)
  c.loss.edited_cells = "all"      # with 'frames', 'word' or 'peak': each frame's best cell
  #                                  among 'all' cells (the reference's max) or the edit's only
  #                                  ('edited': the oracle's object, or the drawn ablation
  #                                  mask)
  c.loss.edited_invariance = 0.0   # with 'word': weight of a term holding still the frames
  #                                  that name nothing of the edited object, through the speech
  #                                  encoder only (0: off)

  # Drawing negatives inside the step (learning_words/learner/negatives.py).
  c.negatives = ml_collections.ConfigDict()
  c.negatives.layer = c.gan.get_ref("intervention_layer")
  # random units (p), 'cluster' (concept-guided units), or an oracle editor on the renders' world
  # (learner/oracle.py; world.edit_variants): 'oracle' (the object under the caption's peak with
  # one attribute changed), 'oracle_random' (a random object's), 'oracle_null' (the peak's object
  # moved, the caption unchanged)
  c.negatives.mode = "random"
  # Oracle modes: 'one' negative per positive (the object the mode picks; the reference draws one)
  # or 'all' (every object's stored edit, each with its own edited term: a difference).
  c.negatives.oracle_objects = "one"
  c.negatives.ring = True          # the reference's mask: the peak's component + a 3x3 ring
  # 'peak' (the method) or 'random': the control, each mask moved to a random place (wrapping at
  # the edges: the same area, shape and unit draws), to tell edits where the caption matches from
  # edits anywhere
  c.negatives.location = "peak"
  # The matchmap that places the masks: 'model' (the training similarity), 'dot' (the reference's
  # compute_matchmap default, whatever the training similarity) or 'cosine'.
  c.negatives.heat = "model"
  c.negatives.candidates = 4       # tries per sample, all drawn in one generator call
  # Random mode's retry rule (negatives.retry_schedule): fresh units at p every try; after a
  # failed try the threshold falls by threshold_step with chance threshold_drop_prob, else p rises
  # by p_step. The reference trains at a fixed p = 0.5 (its p schedule is dead code there).
  c.negatives.p = 0.5
  c.negatives.p_step = 0.0
  c.negatives.threshold = 0.95     # accept when the masked relative change reaches this
  c.negatives.threshold_step = 0.01
  c.negatives.threshold_drop_prob = 0.2
  c.negatives.heat_threshold = 0.95
  # Cluster mode (negatives.cluster_schedule): units at the start (reference: 140 of 512) and
  # added per retry; the ablation mask's heat threshold falls per retry while the acceptance mask
  # stays at heat_threshold; the acceptance threshold falls once before the first check (0.90)
  # and once per retry.
  c.negatives.units = 140
  c.negatives.units_step = 40
  c.negatives.heat_threshold_step = 0.1
  c.negatives.cluster_threshold_step = 0.05

  # Concept clusters and generator dissection (learning_words/learner/concepts.py), cluster mode
  # only.
  c.concepts = ml_collections.ConfigDict()
  c.concepts.n_clusters = 250
  c.concepts.percentile = 99.0
  c.concepts.min_size = 4          # keep clusters with more than 3 dimensions
  c.concepts.segment_threshold = 0.5
  c.concepts.max_points = 10_000   # training pairs for the products; image points kept at most
  c.concepts.dissect_images = 1_000
  c.concepts.dissect_size = 64     # unit maps and cluster scores upsampled to this grid
  c.concepts.chunk = 128           # dissection images per counting call
  c.concepts.every_epochs = 10     # re-cluster and re-dissect this often (not stated by the
                                   # reference)

  # Training (learning_words/learner/train.py): the reference's SGD recipe.
  c.train = ml_collections.ConfigDict()
  c.train.name = ""                # run name under WORKDIR/runs/ (default: the loss kind)
  c.train.seed = -1                # weights, batch order, step keys (-1: `seed`, which also draws
                                   # the world's captions and voices)
  c.train.kinds = ()               # the train stage's runs, one per loss kind (default: loss.kind)
  c.train.epochs = 150
  c.train.optimizer = "sgd"        # 'sgd' (reference: momentum, weight decay) or 'adam'
  c.train.lr = 1e-3
  c.train.momentum = 0.9
  c.train.weight_decay = 5e-7
  c.train.lr_decay_epochs = 30     # lr / 10 every this many epochs
  c.train.warmup_epochs = 0.0      # linear warm-up from 0 (the reference: none)
  c.train.val_pairs = 500
  c.train.log_every = 50
  c.train.image_every = 500
  c.train.checkpoint_every = 500
  # 'FIRST:LAST': a jax.profiler trace of steps FIRST+1..LAST in runs/<run>/profile/ (TensorBoard's
  # profile tab or Perfetto read it); '' (default): none.
  c.train.profile_steps = ""
  c.train.keep_checkpoints = 2
  c.train.init_from = ""           # run name to start the encoders from (regular -> edited recipe)
  # Draw every pair's positive G(z) once and read it in the step (the reference redraws it each
  # step; the same image every epoch). Memory: N_z images (+ their intervention-layer
  # activations for the edited kinds), replicated on every device.
  c.train.cache_positives = False

  # --mode=convert: a trained reference model (model_best_<name>.pth.tar) -> WORKDIR/runs/<run>,
  # evaluated by --mode=eval and a starting point for --config.train.init_from=<run>.
  c.convert = ml_collections.ConfigDict()
  c.convert.model_file = ""
  c.convert.run = "reference"

  # The reproduce experiment (learning_words/experiment.py, configs/reproduce.py): per training
  # seed a `regular` warm-up, then each arm from it with the same budget. No seeds: off.
  c.experiment = ml_collections.ConfigDict()
  c.experiment.seeds = ()
  c.experiment.warmup_epochs = 2
  c.experiment.branch_epochs = 2
  c.experiment.arms = ("regular", "edited_random", "edited_cluster", "edited_random_location")

  # Evaluation (learning_words/evaluation/, --mode=eval): each evaluator configured by its name.
  c.evals = ml_collections.ConfigDict()
  c.evals.names = ("retrieval", "edited_recall", "semantic", "attributes_matched", "attributes",
                   "probe", "localisation", "word_pointing", "edit_effect")
  c.evals.checkpoint = "best"      # 'best' (by validation (A_r5 + I_r5) / 2), 'latest' or a step
  c.evals.split = "test"           # held-out pairs; evaluators take the first ones of the split
  c.evals.seed = 0                 # drawn negatives, generated test material, image choices
  c.evals.batch_size = 16          # captions per jitted call
  c.evals.retrieval = ml_collections.ConfigDict()
  c.evals.retrieval.n_pairs = 500
  c.evals.edited_recall = ml_collections.ConfigDict()
  c.evals.edited_recall.captions = 200
  c.evals.edited_recall.negatives = 9
  c.evals.edited_recall.p = 0.4    # the reference's evaluation starts at 0.4 and, on a failed
  c.evals.edited_recall.p_step = 0.05  # try that does not lower the threshold, adds 0.05
  c.evals.semantic = ml_collections.ConfigDict()
  c.evals.semantic.captions = 500
  c.evals.semantic.negatives = 4
  c.evals.semantic.max_tries = 64  # candidate edits per caption at most (the reference: unstated)
  c.evals.semantic.per_round = 16  # candidates per caption per generation round
  c.evals.semantic.p_range = (0.3, 0.9)  # unit ablation probability, uniform per candidate
  c.evals.semantic.max_shift = 0.15  # matched objects' centroids lie this close (image widths)
  c.evals.attributes = ml_collections.ConfigDict()  # attributes and attributes_matched
  c.evals.attributes.images = 500  # per word: up to this many test images with it, and without
  c.evals.attributes.pool = 5_000  # test images read by the segmenter (the first of the split)
  c.evals.attributes.voices = ("en-us",)  # one recording per word, as the reference; several
                                          # voices pool their pairs
  c.evals.attributes.pre_relu = True  # image features before the encoder's last ReLU (reference)
  c.evals.attributes.tie_credit = 0.0
  c.evals.localisation = ml_collections.ConfigDict()
  c.evals.localisation.n_pairs = 500
  c.evals.edit_effect = ml_collections.ConfigDict()
  c.evals.edit_effect.captions = 200  # a tie's share of a win (the reference: strict wins, 0)
  c.evals.probe = ml_collections.ConfigDict()  # linear attribute probe on the cells' features
  c.evals.probe.fit_images = 500   # its objects fit the probe (the first training pairs)
  c.evals.probe.images = 500       # its objects score it (the first pairs of evals.split)
  c.evals.probe.random_seed = 1    # the randomly initialised encoder of the reference row
  return c
