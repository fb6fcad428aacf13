"""The latent-EBM parts of ``ppl-ebm`` (Xiao, Yan & Amit 2020): ``train-vae`` (a VAE on a 2-D toy
set or on digits, the base model), ``train-flow`` (a toy normalizing flow, the other base model) and
``train-latent-ebm --base <zoo model>`` (an energy on its generator). The results are
zoo folders that ``ppl-ebm compare --model <name>`` and ``ppl-ebm sample`` take by name."""

from __future__ import annotations

from pathlib import Path

__all__ = ["latent_parsers", "run_train_flow", "run_train_latent_ebm", "run_train_pixel_ebm", "run_train_vae"]


def latent_parsers(subparsers) -> None:
    from ppl_ebm.data import dataset_names
    from ppl_ebm.training.latent_ebm import LatentEBMTrainingConfig
    from ppl_ebm.training.vae import VAEConfig

    vae = VAEConfig(dataset="25gaussians")
    parser = subparsers.add_parser("train-vae", help="train a VAE (a latent EBM's base model) as a zoo model",
                                   description="Train a VAE on a 2-D toy set (MLPs) or on digits (DCGAN-style conv "
                                   "decoder) and save it with its card; its decoder mean is the generator of "
                                   "ppl-ebm train-latent-ebm.")
    parser.add_argument("--dataset", required=True, choices=dataset_names(kind="toy2d") + ["digits"])
    parser.add_argument("--iterations", type=int, default=vae.iterations)
    parser.add_argument("--batch-size", type=int, default=vae.batch_size)
    parser.add_argument("--learning-rate", type=float, default=vae.learning_rate)
    parser.add_argument("--latent-dim", type=int, default=vae.latent_dim)
    parser.add_argument("--width", type=int, default=vae.width)
    parser.add_argument("--depth", type=int, default=vae.depth)
    parser.add_argument("--generator-width", type=int, default=vae.generator_width,
                        help="digits: base width of the conv decoder (conv_generator)")
    parser.add_argument("--encoder-width", type=int, default=vae.encoder_width,
                        help="digits: base width of the conv encoder")
    _common(parser)

    from ppl_ebm.training.flow import FlowConfig

    flow = FlowConfig(dataset="25gaussians")
    parser = subparsers.add_parser("train-flow", help="train a toy normalizing flow (a latent EBM's base model) "
                                   "as a zoo model", description="Train a normalizing flow (Pyro's affine "
                                   "autoregressive transforms) on a 2-D toy set by maximum likelihood and save it "
                                   "with its card; its forward map is the generator of ppl-ebm train-latent-ebm.")
    parser.add_argument("--dataset", required=True, choices=dataset_names(kind="toy2d"))
    parser.add_argument("--iterations", type=int, default=flow.iterations)
    parser.add_argument("--batch-size", type=int, default=flow.batch_size)
    parser.add_argument("--learning-rate", type=float, default=flow.learning_rate)
    parser.add_argument("--clip-norm", type=float, default=flow.clip_norm, help="global gradient-norm clip")
    parser.add_argument("--keep-best", action="store_true", help="keep the weights of the best held-out "
                        "log-likelihood (2000 points of their own seed, checked every 100 steps)")
    parser.add_argument("--layers", type=int, default=flow.layers, help="affine autoregressive layers")
    parser.add_argument("--width", type=int, default=flow.width, help="hidden width of each layer's MADE")
    parser.add_argument("--depth", type=int, default=flow.depth, help="hidden layers of each layer's MADE")
    _common(parser)

    ebm = LatentEBMTrainingConfig()
    parser = subparsers.add_parser("train-latent-ebm", help="train a latent EBM on a zoo model's generator",
                                   description="Train an energy on the generator of a zoo model by maximum "
                                   "likelihood with short-run Langevin from the prior (Xiao, Yan & Amit 2020).")
    parser.add_argument("--base", required=True, help="zoo name or folder of the base model (ppl-ebm train-vae or train-flow)")
    parser.add_argument("--iterations", type=int, default=ebm.iterations)
    parser.add_argument("--batch-size", type=int, default=ebm.batch_size)
    parser.add_argument("--step-size", type=float, default=ebm.step_size, help="Langevin eps (drift eps/2, noise sqrt(eps))")
    parser.add_argument("--train-steps", type=int, default=ebm.train_steps, help="Langevin steps per training step")
    parser.add_argument("--sample-steps", type=int, default=ebm.sample_steps, help="Langevin steps to sample")
    parser.add_argument("--energy-regularisation", type=float, default=ebm.energy_regularisation)
    parser.add_argument("--learning-rate", type=float, default=ebm.learning_rate)
    parser.add_argument("--eval-every", type=int, default=ebm.eval_every)
    parser.add_argument("--eval-samples", type=int, default=ebm.eval_samples)
    parser.add_argument("--patience", type=int, default=ebm.patience,
                        help="evaluations without held-out improvement before stopping")
    parser.add_argument("--energy-width", type=int, default=None,
                        help="toy: MLP width (default 128); image base: conv_critic base width (default 16)")
    parser.add_argument("--energy-depth", type=int, default=3)
    from ppl_ebm.nets.architectures import ACTIVATION_NAMES

    parser.add_argument("--energy-activation", default="relu", choices=ACTIVATION_NAMES,
                        help="toy: the energy MLP's hidden activation (default relu; image bases: unused)")
    parser.add_argument("--energy-fourier-features", type=int, default=0, metavar="M",
                        help="toy: feed the energy MLP [x, sin 2πBx, cos 2πBx] with a fixed random B of M "
                        "frequencies (Tancik et al. 2020; default 0: raw x)")
    parser.add_argument("--energy-fourier-scale", type=float, default=None, metavar="S",
                        help="toy: std of B's entries in data units (a frequency b has period 1/|b|); needs "
                        "--energy-fourier-features (default 1)")
    _common(parser)

    from ppl_ebm.training.pixel_ebm import PixelEBMTrainingConfig

    pixel = PixelEBMTrainingConfig()
    parser = subparsers.add_parser("train-pixel-ebm", help="train a pixel-space EBM baseline with a replay buffer",
                                   description="Train an energy on image pixels by maximum likelihood with "
                                   "persistent short-run Langevin from a replay buffer (Du & Mordatch 2019), "
                                   "the baseline of the latent EBM; writes energy.safetensors, pixel_ebm.json "
                                   "and a card scored as the latent EBM's.")
    parser.add_argument("--dataset", default="digits", choices=["digits"])
    parser.add_argument("--iterations", type=int, default=pixel.iterations)
    parser.add_argument("--batch-size", type=int, default=pixel.batch_size)
    parser.add_argument("--buffer-size", type=int, default=pixel.buffer_size)
    parser.add_argument("--reinit", type=float, default=pixel.reinit, help="fraction of chains started from noise")
    parser.add_argument("--step-size", type=float, default=pixel.step_size,
                        help="ULA step (drift step/2 x grad E) on [-1, 1] pixels; 80 = Du & Mordatch's 10 on [0, 1]")
    parser.add_argument("--noise-scale", type=float, default=pixel.noise_scale,
                        help="ULA noise std on [-1, 1] pixels; 0.01 = Du & Mordatch's 0.005 on [0, 1]")
    parser.add_argument("--train-steps", type=int, default=pixel.train_steps, help="Langevin steps per training step")
    parser.add_argument("--energy-regularisation", type=float, default=pixel.energy_regularisation)
    parser.add_argument("--learning-rate", type=float, default=pixel.learning_rate)
    parser.add_argument("--clip-norm", type=float, default=pixel.clip_norm, help="global gradient-norm clip")
    parser.add_argument("--energy-width", type=int, default=16, help="conv_critic base width")
    _common(parser)


def _common(parser) -> None:
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", required=True, help="folder name of the model")
    parser.add_argument("--output", type=Path, default=Path("models"), help="zoo folder (default models/)")
    parser.add_argument("--card-samples", type=int, default=5000,
                        help="samples scored for the model card (default 5000, the protocol of ppl-ebm compare; "
                        "digits: at most the train split's 1437)")
    parser.add_argument("--no-progress", action="store_true")


def _check_card_samples(args, parser) -> None:
    if args.card_samples < 2:
        parser.error(f"--card-samples must be >= 2, got {args.card_samples}")


def _check_fourier(args, parser) -> None:
    import math

    if args.energy_fourier_features < 0:
        parser.error(f"--energy-fourier-features must be >= 0 (0: no Fourier features), got "
                     f"{args.energy_fourier_features}")
    if args.energy_fourier_scale is None:
        return
    if not args.energy_fourier_features:
        parser.error("--energy-fourier-scale needs --energy-fourier-features M > 0 (the scale of its M frequencies)")
    if not (math.isfinite(args.energy_fourier_scale) and args.energy_fourier_scale > 0):
        parser.error(f"--energy-fourier-scale must be a finite number > 0, got {args.energy_fourier_scale}")


def _command(args) -> str:
    import shlex

    return "ppl-ebm " + " ".join(shlex.quote(a) for a in args.argv)


def run_train_vae(args, parser) -> int:
    from ppl_ebm.training.vae import VAEConfig
    from ppl_ebm.zoo.latent_build import train_vae_zoo_model

    _check_card_samples(args, parser)
    try:
        config = VAEConfig(args.dataset, args.iterations, args.batch_size, args.learning_rate, args.latent_dim,
                           args.width, args.depth, seed=args.seed, generator_width=args.generator_width,
                           encoder_width=args.encoder_width).validate()
    except ValueError as error:
        parser.error(str(error))
    folder = train_vae_zoo_model(config, args.name, args.output, not args.no_progress, _command(args), args.card_samples)
    print(f"Wrote {folder}")
    return 0


def run_train_latent_ebm(args, parser) -> int:
    from ppl_ebm.training.latent_ebm import LatentEBMTrainingConfig
    from ppl_ebm.zoo.latent_build import train_latent_ebm_zoo_model

    from ppl_ebm.cli_images import is_image_model

    _check_card_samples(args, parser)
    _check_fourier(args, parser)
    energy_width = args.energy_width or (16 if is_image_model(args.base) else 128)
    try:
        config = LatentEBMTrainingConfig(
            iterations=args.iterations, batch_size=args.batch_size, step_size=args.step_size,
            train_steps=args.train_steps, sample_steps=args.sample_steps,
            energy_regularisation=args.energy_regularisation, learning_rate=args.learning_rate,
            eval_every=args.eval_every, eval_samples=args.eval_samples, patience=args.patience, seed=args.seed,
        ).validate()
    except ValueError as error:
        parser.error(str(error))
    try:
        folder = train_latent_ebm_zoo_model(args.base, args.name, args.output, config, energy_width,
                                            args.energy_depth, not args.no_progress, _command(args),
                                            args.card_samples, energy_activation=args.energy_activation,
                                            energy_fourier_features=args.energy_fourier_features,
                                            energy_fourier_scale=args.energy_fourier_scale or 1.0)
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    print(f"Wrote {folder}")
    return 0


def run_train_flow(args, parser) -> int:
    from ppl_ebm.training.flow import FlowConfig
    from ppl_ebm.zoo.flow_build import train_flow_zoo_model

    _check_card_samples(args, parser)
    try:
        config = FlowConfig(args.dataset, args.iterations, args.batch_size, args.learning_rate, args.clip_norm,
                            args.layers, args.width, args.depth, seed=args.seed,
                            keep_best=args.keep_best).validate()
    except ValueError as error:
        parser.error(str(error))
    folder = train_flow_zoo_model(config, args.name, args.output, not args.no_progress, _command(args),
                                  args.card_samples)
    print(f"Wrote {folder}")
    return 0


def run_train_pixel_ebm(args, parser) -> int:
    from ppl_ebm.training.pixel_ebm import PixelEBMTrainingConfig
    from ppl_ebm.zoo.latent_build import _machine
    from ppl_ebm.zoo.pixel_build import train_pixel_ebm_model

    _check_card_samples(args, parser)
    try:
        config = PixelEBMTrainingConfig(
            iterations=args.iterations, batch_size=args.batch_size, buffer_size=args.buffer_size,
            reinit=args.reinit, step_size=args.step_size, noise_scale=args.noise_scale,
            train_steps=args.train_steps, energy_regularisation=args.energy_regularisation,
            learning_rate=args.learning_rate, clip_norm=args.clip_norm, seed=args.seed,
        ).validate()
        if config.buffer_size < config.batch_size:
            raise ValueError(f"--buffer-size must be >= --batch-size, got {config.buffer_size} < {config.batch_size}.")
        if args.energy_width < 1:
            raise ValueError(f"--energy-width must be >= 1, got {args.energy_width}.")
    except ValueError as error:
        parser.error(str(error))
    folder = train_pixel_ebm_model(args.dataset, args.name, args.output, config, args.energy_width,
                                   not args.no_progress, _command(args), args.card_samples, _machine())
    print(f"Wrote {folder}")
    return 0
