"""The ``ppl-ebm`` command.

``ppl-ebm compare`` (the main job) runs DDLS's synthetic experiment on a zoo model (default:
the shipped WGAN-GP on the DOT-scale 25-Gaussians, ``25gaussians-gulrajani-wgan-gp``): generator only, DRS,
MH-GAN, DOT and DDLS with ULA, MALA, i-SIR and Ex2MCMC, scored by exact W1, the papers' W2^2 "EMD" and DDLS Table 1's mode metrics, with ESS figures for
the samplers; it prints a table and writes ``metrics.json``, ``report.md`` and figures.
``--model gaussian`` compares the samplers on the analytic Gaussian target instead.
``ppl-ebm train`` reproduces a zoo checkpoint (toy or image GAN; ``ppl-ebm train-classifier``
the image metrics' classifier); ``ppl-ebm calibrate`` fine-tunes a zoo model's
critic into a density-ratio estimator and fits its logistic head (DDLS Sec. 5.2);
``ppl-ebm mixing`` measures how many Langevin steps the chains need (progression, R-hat, L-lag
coupling bound); ``ppl-ebm samplers`` compares every sampler x backend by ESS at matched wall time;
``ppl-ebm sample`` samples a zoo model or a model file into a Zarr store (one process, torchrun ranks
or JAX processes); ``ppl-ebm report STORE`` writes the diagnostics of a stored run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from ppl_ebm.kernels.registry import BACKENDS, get_sampler, sampler_names

__all__ = ["main"]

_HMC_CHAINS = 4  # Pyro runs NUTS/HMC chains one after another; a few long chains, as users do


def _compare_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="generator vs baselines vs DDLS samplers on a zoo model (the main job)",
        description="Run DDLS's synthetic comparison on a zoo model (name or folder), or with "
        "--model gaussian compare the samplers on the analytic Gaussian target.",
    )
    parser.add_argument("--model", default=None,
                        help="zoo name or model folder (default: the shipped 25-Gaussians NS-GAN), or 'gaussian'")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="zoo runs: any of generator drs mh_gan dot "
                        f"{{{','.join(sampler_names())}}}/{{{','.join(BACKENDS)}}} "
                        "(default: the baselines and ULA/MALA on both backends)")
    parser.add_argument("--num-samples", type=int, default=None,
                        help="zoo runs: samples scored per method (default 5000; image models 500)")
    parser.add_argument("--steps", type=int, default=None,
                        help="zoo runs: Langevin steps per chain (default 100; half warmup, half draws)")
    parser.add_argument("--sweep", type=float, nargs="*", default=None,
                        help="zoo runs: ULA step sizes of the W1 sweep (give none to skip it)")
    parser.add_argument("--paper-steps", type=int, default=None,
                        help="image models: steps of the paper's ULA (ula-paper; default 1000, DDLS App. B.2)")
    parser.add_argument("--trace-samplers", action="store_true",
                        help="image models: also the FD every 10 steps along MALA's, i-SIR's and Ex2MCMC's draws "
                        "(after their warmup, the first half of --steps): FID against steps as in ex2mcmc")
    parser.add_argument("--ex2mcmc-protocol", action="store_true",
                        help="image models: MALA, i-SIR and Ex2MCMC in the ex2mcmc paper's setting (--steps counts its "
                        "steps: 3 MALA steps, or i-SIR then 3 MALA steps; step from 0.01 adapted to acceptance 0.67 "
                        "in the first tenth, no mass matrix)")
    parser.add_argument("--sweep-chains", type=int, default=None, help="chains of the sweep (default 1000; images 250)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="image models of MNIST / Fashion-MNIST / CIFAR-10: the folder holding the data set")
    parser.add_argument("--w2sq-points", type=int, default=None,
                        help="zoo runs: points per side of the papers' EMD (W2^2, POT's default cost; default 1000 as "
                        "DOT/DDLS, or --num-samples when fewer)")
    parser.add_argument("--w2sq-repeats", type=int, default=10, help="zoo runs: repeats of that figure (mean and std)")
    parser.add_argument("--raw-critic", action="store_true",
                        help="zoo runs: DDLS on the GAN's own critic instead of the calibrated one")
    parser.add_argument("--mh-gan-chain-length", type=int, default=None,
                        help="zoo runs: proposals per MH-GAN sample (default 640, Turner et al.)")
    parser.add_argument("--samplers", nargs="+", default=["ula", "mala", "nuts", "hmc"], choices=sampler_names())
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--chains", type=int, default=None,
                        help="chains for ULA/MALA (default: --num-samples on a zoo model, 256 on gaussian)")
    parser.add_argument("--hmc-chains", type=int, default=_HMC_CHAINS, help="chains for NUTS/HMC (default 4)")
    parser.add_argument("--hmc-warmup", type=int, default=None,
                        help="zoo runs: NUTS/HMC warmup per chain (default 200)")
    parser.add_argument("--hmc-draws", type=int, default=None,
                        help="zoo runs: NUTS/HMC draws per chain, pooled and thinned to --num-samples (default 1250; "
                        "images 250); --hmc-chains x --hmc-draws must reach --num-samples")
    parser.add_argument("--warmup", type=int, default=300, help="gaussian runs: warmup per chain")
    parser.add_argument("--samples", type=int, default=1000, help="gaussian runs: draws per chain")
    parser.add_argument("--step-size", type=float, default=None,
                        help="ULA step size (zoo runs: default the sweep's best on validation data, DDLS used "
                        "0.01; gaussian runs: default 0.05)")
    parser.add_argument("--latent-dim", type=int, default=4)
    parser.add_argument("--data-dim", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("runs/compare"), help="output folder")
    parser.add_argument("--device", default=None,
                        help="zoo runs: cpu, cuda (gpu) or cuda:N for the samplers of both backends "
                        "(default: CPU / JAX's default device)")
    parser.add_argument("--inception-weights", type=Path, default=None, metavar="PATH",
                        help="image models: also score the standard FID and IS (torch-fidelity, the 'fid' extra) "
                        "on the Inception weights at PATH (weights-inception-2015-12-05-6726825d.pth or "
                        "pt_inception-2015-12-05-6726825d.pth); nothing is downloaded")
    parser.add_argument("--record-in-card", action="store_true",
                        help="zoo runs: also store the table in the model's config.json and MODEL_CARD.md")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _train_parser(subparsers) -> None:
    from ppl_ebm.cli_images import add_image_train_arguments
    from ppl_ebm.data import dataset_names
    from ppl_ebm.data.images import image_dataset_names
    from ppl_ebm.training.egan import EGAN_LOSSES
    from ppl_ebm.training.gan import LOSSES, TrainingConfig
    from ppl_ebm.training.image_gan import IMAGE_LOSSES

    defaults = TrainingConfig(dataset="25gaussians")
    parser = subparsers.add_parser("train", help="train a toy GAN, an energy GAN or an image GAN and save it as a zoo model",
                                   description="Train and save a GAN with its model card: a toy GAN (then "
                                   "calibrated), a Dai et al. (2017) energy GAN, or a DCGAN / SN-GAN on an image set "
                                   "(scored on the zoo classifier).")
    parser.add_argument("--dataset", required=True, choices=dataset_names(kind="toy2d") + image_dataset_names())
    parser.add_argument("--loss", default=None, choices=sorted(set(LOSSES) | set(IMAGE_LOSSES) | set(EGAN_LOSSES)),
                        help="toy: wgan-gp (default) or nsgan; egan-ent-nn, egan-ent-vi, egan-const, gan: Dai et al. "
                             "(2017) energy GANs with the released code's settings per data set (the toy sets and "
                             "digits); images: the architecture's (dcgan: nsgan, sngan: hinge)")
    parser.add_argument("--iterations", type=int, default=None,
                        help=f"generator iterations (toy default {defaults.iterations}, images 3000; energy GANs: "
                             "the released code's)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"batch size (toy default {defaults.batch_size}, images 64, energy GANs 500)")
    parser.add_argument("--entropy-weight", type=float, default=None,
                        help="energy GANs: per-point weight of the entropy term (default: the released code's)")
    parser.add_argument("--margin", type=_margin, default=None,
                        help="energy GANs: the released code's hinge on the critic's loss, mean max(mean c(real) - "
                             "c(fake), -margin); a number > 0, or 'none' for the plain energy gap (default: the "
                             "code's per data set: none on the 4 Gaussians and digits, 10 on the biased mixture "
                             "and the spirals)")
    parser.add_argument("--critic-average-decay", type=float, default=None,
                        help="energy GANs: save an exponential moving average of the critic's weights with this "
                             "decay per iteration (default 0: the last iterate, as the paper)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--activation", default=defaults.activation)
    parser.add_argument("--name", required=True, help="folder name of the model")
    parser.add_argument("--output", type=Path, default=Path("models"), help="zoo folder (default models/)")
    parser.add_argument("--init-from", default=None,
                        help="zoo name or folder whose weights start the run (continues its training)")
    _fine_tune_arguments(parser)
    add_image_train_arguments(parser)
    parser.add_argument("--no-progress", action="store_true")


def _margin(text: str) -> float | str:
    """``--margin``: 'none' (no hinge) or a number > 0, checked here so that the error names the flag."""
    from argparse import ArgumentTypeError

    if text.strip().lower() == "none":
        return "none"
    try:
        value = float(text)
    except ValueError:
        raise ArgumentTypeError(f"expected a number > 0 or 'none', got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise ArgumentTypeError(f"expected a finite number > 0 or 'none', got {text!r}")
    return value


def _fine_tune_arguments(parser) -> None:
    from ppl_ebm.training.critic_tuning import SCHEDULES, FineTuneConfig

    defaults = FineTuneConfig()
    parser.add_argument("--fine-tune-steps", type=int, default=defaults.steps,
                        help=f"BCE fine-tuning steps of the critic (default {defaults.steps}; 0: logistic head only)")
    parser.add_argument("--fine-tune-lr", type=float, default=defaults.learning_rate)
    parser.add_argument("--fine-tune-batch", type=int, default=defaults.batch_size)
    parser.add_argument("--proposal-scale", type=float, default=defaults.proposal_scale,
                        help="latent std of the fine-tuning's generated batches, importance-weighted back to the "
                             f"prior (default {defaults.proposal_scale:g}: the prior, DDLS 5.2); e.g. 2 teaches the "
                             "critic a low logit off the data, so the DDLS target stays inside the prior's reach "
                             "(the target check of `compare` says whether it did)")
    parser.add_argument("--extended-noise-scale", type=float, default=defaults.extended_noise_scale,
                        help="eps of DDLS Corollary 1: calibrate the critic against the extended generator "
                             "G(z) + eps z', z' ~ N(0, I), whose support covers data the generator misses; "
                             "DDLS then samples (z, z'). In data units, e.g. the data's noise std "
                             f"(default {defaults.extended_noise_scale:g}: the generator itself; toy models only)")
    parser.add_argument("--lr-schedule", choices=SCHEDULES, default=defaults.learning_rate_schedule,
                        help="the fine-tuning's step: constant (default), or cosine decay to 0, so that the critic "
                             "is not one noisy Adam iterate (whose error sits in each mode's level of the ratio)")


def _fine_tune_config(args, parser):
    from ppl_ebm.training.critic_tuning import FineTuneConfig

    if args.fine_tune_steps < 0:
        parser.error(f"--fine-tune-steps must be >= 0, got {args.fine_tune_steps}")
    if args.fine_tune_steps == 0:
        return None
    try:
        return FineTuneConfig(steps=args.fine_tune_steps, learning_rate=args.fine_tune_lr,
                              batch_size=args.fine_tune_batch, seed=args.seed,
                              proposal_scale=args.proposal_scale,
                              extended_noise_scale=args.extended_noise_scale,
                              learning_rate_schedule=args.lr_schedule).validate()
    except ValueError as error:
        parser.error(str(error))


def _calibrate_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "calibrate", help="fine-tune a zoo model's critic by BCE and fit its logistic head (DDLS 5.2)",
        description="Calibrate a zoo model in place: fine-tune its critic by binary cross-entropy "
        "against the frozen generator, fit the logistic head on held-out samples, report the "
        "MH-GAN Z statistic, and rewrite config.json and the model card. Image models fine-tune on the train "
        "split and fit and test the head on the two halves of the held-out split.")
    parser.add_argument("--model", required=True, help="zoo name or model folder")
    parser.add_argument("--seed", type=int, default=0)
    _fine_tune_arguments(parser)
    parser.add_argument("--data-root", type=Path, default=None,
                        help="image models: folder holding the image set (not for digits)")
    parser.add_argument("--no-progress", action="store_true")


def _mixing_parser(subparsers) -> None:
    from ppl_ebm.studies.mixing import SAMPLERS, MixingConfig

    d = MixingConfig()
    parser = subparsers.add_parser(
        "mixing", help="mixing time of ULA/MALA on a zoo model: progression, R-hat, L-lag coupling bound",
        description="How many Langevin steps before draws count: EMD/energy progression from the prior, "
        "rank and nested R-hat against iteration, and the L-lag coupling upper bound on TV, for ULA, MALA "
        "and MALA with independence steps from the prior (mala-imh).")
    parser.add_argument("--model", default=d.model, help="zoo name or model folder")
    parser.add_argument("--samplers", nargs="+", default=list(d.samplers), choices=list(SAMPLERS))
    parser.add_argument("--chains", type=int, default=d.chains)
    parser.add_argument("--steps", type=int, default=d.steps)
    parser.add_argument("--every", type=int, default=d.every, help="checkpoint every this many steps")
    parser.add_argument("--ula-step", type=float, default=d.ula_step_size)
    parser.add_argument("--mala-step", type=float, default=None,
                        help="MALA's and mala-imh's step; default: each sampler's median step adapted in a pilot run")
    parser.add_argument("--superchains", type=int, default=d.superchains)
    parser.add_argument("--pairs", type=int, default=d.pairs, help="coupled pairs for the TV bound")
    parser.add_argument("--lag", type=int, default=d.lag)
    parser.add_argument("--max-iterations", type=int, default=d.max_iterations)
    parser.add_argument("--independence-every", type=int, default=d.independence_every,
                        help="mala-imh: every k-th step an independence step from the prior (k >= 2, dividing --lag)")
    parser.add_argument("--raw-critic", action="store_true")
    parser.add_argument("--no-target-check", action="store_true",
                        help="skip the search for a highest density beyond the prior (~5 s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("runs/mixing"))


def _run_mixing(args, parser) -> int:
    import shlex

    from ppl_ebm.studies.mixing_report import write_mixing_report
    from ppl_ebm.studies.mixing import MixingConfig, run_mixing
    from ppl_ebm.zoo.store import model_dir

    try:
        _check_output(args)
        model_dir(args.model)
        config = MixingConfig(
            model=args.model, samplers=tuple(args.samplers), chains=args.chains, steps=args.steps, every=args.every,
            ula_step_size=args.ula_step, mala_step_size=args.mala_step, superchains=args.superchains,
            pairs=args.pairs, lag=args.lag, max_iterations=args.max_iterations,
            independence_every=args.independence_every, raw_critic=args.raw_critic,
            check_target=not args.no_target_check, seed=args.seed,
        ).validate()
    except (ValueError, OSError) as error:
        parser.error(str(error))
    study = run_mixing(config, log=lambda message: print(message, file=sys.stderr, flush=True))
    paths = write_mixing_report(study, args.output, "ppl-ebm " + " ".join(shlex.quote(a) for a in args.argv))
    print(paths["report"].read_text())
    print(f"Wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def _samplers_parser(subparsers) -> None:
    from ppl_ebm.studies.samplers import METHODS, SamplerStudyConfig

    d = SamplerStudyConfig()
    parser = subparsers.add_parser(
        "samplers", help="every sampler x backend by ESS at matched wall time on DDLS targets",
        description="Compare ULA, MALA, NUTS and HMC on torch and JAX (and Pyro NUTS with one chain, and MALA "
        "with independence steps from the prior, mala-imh) by ESS, ESS/s and ESS per gradient at a matched "
        "sampling-time budget.")
    parser.add_argument("--models", nargs="+", default=list(d.models))
    parser.add_argument("--methods", nargs="+", default=list(d.methods), choices=list(METHODS))
    parser.add_argument("--budget", type=float, default=d.budget_seconds, help="sampling seconds per method")
    parser.add_argument("--chains", type=int, default=d.langevin_chains, help="ULA/MALA chains")
    parser.add_argument("--jax-hmc-chains", type=int, default=d.jax_hmc_chains, help="NumPyro vectorised chains")
    parser.add_argument("--torch-hmc-chains", type=int, default=d.torch_hmc_chains)
    parser.add_argument("--warmup", type=int, default=d.warmup)
    parser.add_argument("--ula-step", type=float, default=d.ula_step_size)
    parser.add_argument("--independence-every", type=int, default=d.independence_every,
                        help="mala-imh: every k-th step an independence step from the prior (k >= 2)")
    parser.add_argument("--no-target-check", action="store_true",
                        help="skip the search for a highest density beyond the prior (~5 s a model)")
    parser.add_argument("--step-size-adaptation", default=d.step_size_adaptation,
                        help="our MALA family's warmup step (both parts): 'dual_averaging' (a few hundred warmup "
                        "steps) or 'cross_chain' (one step moved by all chains' mean acceptance; tens of steps)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("runs/samplers"))
    # The second part: gradients to low bias on targets with known truth (studies/samplers_bias.py).
    from ppl_ebm.studies.samplers_bias import BIAS_SAMPLERS, BiasStudyConfig

    b = BiasStudyConfig()
    parser.add_argument("--parts", nargs="+", default=["time", "bias"], choices=["time", "bias"],
                        help="time: ESS at matched wall time on --models; bias: gradients to low bias on --bias-targets")
    parser.add_argument("--bias-targets", nargs="+", default=list(b.targets),
                        help="standard targets (gaussian, banana, funnel, mixture, rosenbrock) and zoo models (truth: "
                        "quadrature for a 2-D latent, importance sampling from the prior for a larger one)")
    parser.add_argument("--bias-samplers", nargs="+", default=list(b.samplers), choices=list(BIAS_SAMPLERS))
    parser.add_argument("--bias-chains", type=int, default=b.chains)
    parser.add_argument("--bias-nuts-chains", type=int, default=b.nuts_chains)
    parser.add_argument("--bias-warmup", type=int, default=b.warmup)
    parser.add_argument("--bias-draws", type=int, default=b.draws)
    parser.add_argument("--quadrature-points", type=int, default=b.quadrature_points,
                        help="grid points per axis of a zoo model's truth to start from (doubled, up to 4000, "
                        "until its own error is 1%% of the bias threshold)")
    parser.add_argument("--importance-draws", type=int, default=b.importance_draws,
                        help="prior draws of a larger latent's importance-sampling truth to start from (doubled, up "
                        "to 3.2 million, the same way)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke sizes: bias part only, banana, 8 chains, 40 + 40 steps")


def _bias_config(args):
    from ppl_ebm.studies.samplers_bias import BiasStudyConfig
    from ppl_ebm.targets.standard import STANDARD_TARGETS
    from ppl_ebm.zoo.store import model_dir

    if args.quick:
        args.parts, args.bias_targets, args.bias_chains, args.bias_nuts_chains = ["bias"], ["banana"], 8, 4
        args.bias_warmup = args.bias_draws = 40
    for target in args.bias_targets:
        if target not in STANDARD_TARGETS:
            model_dir(target)  # names the unknown target
    return BiasStudyConfig(
        targets=tuple(args.bias_targets), samplers=tuple(args.bias_samplers), chains=args.bias_chains,
        nuts_chains=args.bias_nuts_chains, warmup=args.bias_warmup, draws=args.bias_draws,
        quadrature_points=args.quadrature_points, importance_draws=args.importance_draws,
        step_size_adaptation=args.step_size_adaptation, seed=args.seed).validate()


def _run_samplers(args, parser) -> int:
    import shlex

    from ppl_ebm.studies.samplers_report import write_sampler_report
    from ppl_ebm.studies.samplers import SamplerStudyConfig, run_sampler_study
    from ppl_ebm.zoo.store import model_dir

    try:
        _check_output(args)
        for model in args.models:
            model_dir(model)
        config = SamplerStudyConfig(
            models=tuple(args.models), methods=tuple(args.methods), budget_seconds=args.budget,
            langevin_chains=args.chains, jax_hmc_chains=args.jax_hmc_chains, torch_hmc_chains=args.torch_hmc_chains,
            warmup=args.warmup, ula_step_size=args.ula_step, seed=args.seed,
            independence_every=args.independence_every, step_size_adaptation=args.step_size_adaptation,
            check_target=not args.no_target_check,
        ).validate()
        bias_config = _bias_config(args) if "bias" in args.parts or args.quick else None
    except (ValueError, OSError) as error:
        parser.error(str(error))
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    from dataclasses import asdict

    from ppl_ebm.studies.samplers_bias import run_bias_study

    study = run_sampler_study(config, log=log) if "time" in args.parts else {"config": asdict(config), "models": {}}
    if bias_config is not None:
        study["bias"] = run_bias_study(bias_config, log=log)
    paths = write_sampler_report(study, args.output, "ppl-ebm " + " ".join(shlex.quote(a) for a in args.argv))
    print(paths["report"].read_text())
    print(f"Wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def _run_calibrate(args, parser) -> int:
    from ppl_ebm.zoo.store import model_dir
    from ppl_ebm.zoo.build import calibrate_zoo_model

    try:
        folder = model_dir(args.model)
    except FileNotFoundError as error:
        parser.error(str(error))
    fine_tune = _fine_tune_config(args, parser)
    try:
        folder = calibrate_zoo_model(folder, fine_tune, progress_bar=not args.no_progress, root=args.data_root)
    except ValueError as error:  # e.g. --data-root on a toy model
        parser.error(str(error))
    print((folder / "MODEL_CARD.md").read_text())
    print(f"Wrote {folder}")
    return 0


def _run_train(args, parser) -> int:
    from ppl_ebm.training.gan import TrainingConfig
    from ppl_ebm.zoo.build import train_zoo_model

    from ppl_ebm.data.images import IMAGE_DATASETS
    from ppl_ebm.training.egan import EGAN_LOSSES

    if args.loss not in EGAN_LOSSES:
        if args.entropy_weight is not None or args.critic_average_decay is not None or args.margin is not None:
            parser.error("--entropy-weight, --margin and --critic-average-decay apply to the energy GANs "
                         "(--loss egan-ent-nn / egan-ent-vi / egan-const / gan) only")
    elif args.dataset in IMAGE_DATASETS:  # Dai et al.'s digits ranking (Sec. 5.2): an energy GAN on images
        if args.data_root is not None or args.device != "cpu":
            parser.error("--data-root and --device apply to the image GANs; energy GANs train on digits in JAX "
                         "on its default device.")
        return _run_train_egan(args, parser)
    if args.dataset in IMAGE_DATASETS:
        from ppl_ebm.cli_images import run_image_train

        try:
            _check_output(args)
        except (ValueError, PermissionError) as error:
            parser.error(str(error))
        return run_image_train(args, parser)
    for option, value in (("--data-root", args.data_root), ("--latent-dim", args.latent_dim)):
        if value is not None:
            parser.error(f"{option} applies to image data sets, not the toy set {args.dataset!r}.")
    if args.device != "cpu":
        parser.error("--device applies to image data sets; toy GANs train in JAX on its default device.")
    if args.loss in EGAN_LOSSES:
        return _run_train_egan(args, parser)
    defaults = TrainingConfig(dataset=args.dataset)
    try:
        _check_output(args)
        config = TrainingConfig(dataset=args.dataset, loss=args.loss or defaults.loss,
                                iterations=defaults.iterations if args.iterations is None else args.iterations,
                                batch_size=defaults.batch_size if args.batch_size is None else args.batch_size,
                                seed=args.seed, activation=args.activation).validate()
    except (ValueError, PermissionError) as error:
        parser.error(str(error))
    fine_tune = _fine_tune_config(args, parser)
    if args.init_from is not None:
        from ppl_ebm.zoo.store import model_dir

        try:
            model_dir(args.init_from)
        except FileNotFoundError as error:
            parser.error(str(error))
    folder = train_zoo_model(config, args.name, args.output, progress_bar=not args.no_progress, fine_tune=fine_tune,
                             init_from=args.init_from)
    print((folder / "MODEL_CARD.md").read_text())
    print(f"Wrote {folder}")
    return 0


def _run_train_egan(args, parser) -> int:
    from ppl_ebm.training.egan import paper_config
    from ppl_ebm.zoo.egan_build import train_egan_zoo_model

    overrides = {key: value for key, value in (("iterations", args.iterations), ("batch_size", args.batch_size),
                                               ("entropy_weight", args.entropy_weight), ("seed", args.seed),
                                               ("critic_average_decay", args.critic_average_decay),
                                               ("latent_dim", getattr(args, "latent_dim", None)))
                 if value is not None}
    if args.margin is not None:
        if args.loss == "gan":
            parser.error("--margin applies to the energy GANs' critic loss; the GAN baseline (--loss gan) has none")
        overrides["margin"] = None if args.margin == "none" else args.margin
    if args.init_from is not None:
        parser.error("--init-from continues the DDLS toy GANs only, not the energy GANs")
    try:
        _check_output(args)
        config = paper_config(args.dataset, args.loss, **overrides)
    except (ValueError, PermissionError, TypeError) as error:
        parser.error(str(error))
    import shlex

    folder = train_egan_zoo_model(config, args.name, args.output, progress_bar=not args.no_progress,
                                  command="ppl-ebm " + " ".join(shlex.quote(a) for a in args.argv))
    print((folder / "MODEL_CARD.md").read_text())
    print(f"Wrote {folder}")
    return 0


def _egan_table_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "egan-table", help="Dai et al. (2017) App. B.2: KL table and contours of zoo energy GANs",
        description="p_data, p_emp, p_gen and p_disc on the 100x100 grid, their pairwise KLs beside the paper's "
                    "Table 2, contour figures; writes metrics.json, report.md and one PNG per model.")
    parser.add_argument("--models", nargs="+", default=None,
                        help="zoo names or folders (default: every energy GAN in the zoo)")
    parser.add_argument("--generated-points", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("runs/egan-table"))
    parser.add_argument("--record-in-card", action="store_true",
                        help="also write each model's row into its config.json and model card")


def _run_egan_table(args, parser) -> int:
    from ppl_ebm.studies.egan_table import run_egan_table
    from ppl_ebm.studies.egan_table_report import format_egan_table
    from ppl_ebm.zoo.egan_build import egan_model_names, record_egan_table_in_card

    _check_positive(parser, args, ["generated_points"])
    try:
        _check_output(args)
        models = args.models or egan_model_names()
        if not models:
            raise ValueError("no energy GAN in the zoo; train one with ppl-ebm train --loss egan-ent-nn ...")
        results = run_egan_table(models, args.output, args.generated_points, args.seed)
    except (ValueError, FileNotFoundError, PermissionError) as error:
        parser.error(str(error))
    if args.record_in_card:
        for name, row in results["models"].items():
            record_egan_table_in_card(name, row, "ppl-ebm " + " ".join(args.argv))
    print(format_egan_table(results))
    print(f"Wrote {args.output}")
    return 0


def _egan_sample_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "egan-sample", help="sample a zoo energy GAN's p_disc (MALA, NUTS, HMC) and its latent tilt",
        description="p_disc(x) = exp(-c(x)) on the App. B.2 canvas as a NumPyro model through ppl_ebm.sample, each "
                    "sampler's histogram against the exact cell masses (KL vs its Monte Carlo null); then the latent "
                    "tilt p0(z) exp(-c(G(z))) with MALA beside the generator alone. Writes sampling.json/.md.")
    parser.add_argument("--model", required=True, help="zoo name or folder of an energy GAN")
    parser.add_argument("--samplers", nargs="+", default=["mala", "nuts", "hmc"], choices=["mala", "nuts", "hmc"])
    parser.add_argument("--num-chains", type=int, default=64, help="MALA chains (default 64)")
    parser.add_argument("--hmc-chains", type=int, default=16, help="NUTS / HMC chains (default 16)")
    parser.add_argument("--num-warmup", type=int, default=300)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-latent-tilt", action="store_true")
    parser.add_argument("--record-in-card", action="store_true", help="also write the report into the model card")
    parser.add_argument("--output", type=Path, default=Path("runs/egan-sample"))


def _run_egan_sample(args, parser) -> int:
    from ppl_ebm.studies.egan_sampling import format_sampling, run_egan_sampling

    _check_positive(parser, args, ["num_chains", "hmc_chains", "num_samples"])
    try:
        _check_output(args)
        results = run_egan_sampling(args.model, args.output, tuple(args.samplers), args.num_chains, args.num_warmup,
                                    args.num_samples, args.hmc_chains, args.seed,
                                    latent_tilt=not args.no_latent_tilt)
    except (ValueError, FileNotFoundError, PermissionError) as error:
        parser.error(str(error))
    if args.record_in_card:
        from ppl_ebm.zoo.egan_build import record_egan_sampling_in_card

        record_egan_sampling_in_card(args.model, format_sampling(results), "ppl-ebm " + " ".join(args.argv))
    print(format_sampling(results))
    print(f"Wrote {args.output}")
    return 0


def _egan_rank_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "egan-rank", help="Dai et al. (2017) Sec. 5.2: rank held-out digits by an energy GAN's energy",
        description="Rank the held-out images of an image energy GAN's data set by the energy c(x) within each "
                    "class; write ranking.png (per class the k lowest- and k highest-energy images), energies.png, "
                    "rank.json and report.md, with AUCs against generated and corrupted images and Spearman "
                    "correlations with the distance to the class mean and the zoo classifier's confidence.")
    parser.add_argument("--model", required=True, help="zoo name or folder of an image energy GAN")
    parser.add_argument("--k", type=int, default=8, help="images per class at each end (default 8)")
    parser.add_argument("--num-generated", type=int, default=360, help="generator samples ranked (default 360)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--record-in-card", action="store_true", help="also write the report and figures into the model card")
    parser.add_argument("--output", type=Path, default=Path("runs/egan-rank"))


def _run_egan_rank(args, parser) -> int:
    import shlex

    from ppl_ebm.studies.egan_rank import format_rank, run_egan_rank

    _check_positive(parser, args, ["k", "num_generated"])
    try:
        _check_output(args)
        results = run_egan_rank(args.model, args.output, args.k, args.num_generated, args.seed)
    except (ValueError, FileNotFoundError, PermissionError) as error:
        parser.error(str(error))
    if args.record_in_card:
        from ppl_ebm.zoo.egan_build import record_egan_rank_in_card

        figures = ("ranking.png", "ranking_mixed.png", "energies.png")
        record_egan_rank_in_card(args.model, results, {name: args.output / name for name in figures},
                                 "ppl-ebm " + " ".join(shlex.quote(a) for a in args.argv))
    print(format_rank(results))
    print(f"Wrote {args.output}")
    return 0


def _run_zoo_compare(args, parser) -> int:
    from ppl_ebm.studies.compare_report import format_compare_table, format_paired_ratios, write_report
    from ppl_ebm.studies.compare import COMPARE_MODEL, DEFAULT_METHODS, SWEEP_STEPS, CompareConfig, run_compare
    from ppl_ebm.zoo.store import model_dir

    try:
        _check_output(args)
        model_dir(args.model or COMPARE_MODEL)
        steps = {} if args.steps is None else {"langevin_steps": args.steps}
        chain_length = {} if args.mh_gan_chain_length is None else {"mh_gan_chain_length": args.mh_gan_chain_length}
        hmc_length = {key: value for key, value in (("hmc_warmup", args.hmc_warmup), ("hmc_draws", args.hmc_draws))
                      if value is not None}
        config = CompareConfig(
            model=args.model or COMPARE_MODEL,
            methods=tuple(args.methods) if args.methods else DEFAULT_METHODS,
            num_samples=5000 if args.num_samples is None else args.num_samples, langevin_chains=args.chains, ula_step_size=args.step_size,
            hmc_chains=args.hmc_chains, sweep_steps=SWEEP_STEPS if args.sweep is None else tuple(args.sweep),
            sweep_chains=1000 if args.sweep_chains is None else args.sweep_chains, seed=args.seed,
            raw_critic=args.raw_critic, **chain_length, **hmc_length,
            w2sq_points=args.w2sq_points, w2sq_repeats=args.w2sq_repeats,
            progress_bar=not args.no_progress, device=args.device, **steps,
        ).validate()
    except (ValueError, OSError) as error:
        parser.error(str(error))
    output = run_compare(config, log=lambda message: print(message, file=sys.stderr, flush=True))
    print(format_compare_table(output.metrics))
    paired = format_paired_ratios(output.metrics)
    if paired:
        print("\n" + paired)
    if output.sweep:
        sweep = output.sweep
        print("\nW1 vs ULA step: " + ", ".join(f"{s:g}: {e:.4f}" for s, e in zip(sweep["step_sizes"], sweep["emd"])))
        print(f"MALA adapted (step {sweep['mala_adapted_step_size']:.3g}): {sweep['mala_adapted_emd']:.4f} = "
              f"{sweep['mala_over_best']:.2f}x the best fixed step; with independence steps (mala-imh): "
              f"{sweep['mala_imh_adapted_emd']:.4f} = {sweep['mala_imh_over_best']:.2f}x")
    paths = write_report(output, args.output)
    if args.record_in_card:
        import shlex

        from ppl_ebm.zoo.build import record_compare_in_card

        command = "ppl-ebm " + " ".join(shlex.quote(a) for a in args.argv)
        record_compare_in_card(model_dir(config.model), output.to_json(), command)
    print(f"\nWrote {', '.join(str(p) for p in paths.values())}")
    return 0


def _check_output(args) -> None:
    """--output checked before the study runs: a file in its place would crash only at the end."""
    from ppl_ebm.validation import check_output_dir

    check_output_dir(args.output, "--output")


def _check_positive(parser, args, names) -> None:
    for name in names:
        value = getattr(args, name)
        if value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def _run_compare(args, parser) -> int:
    from ppl_ebm.cli_images import is_image_model, run_image_compare_cli

    if args.model is not None and is_image_model(args.model):
        return run_image_compare_cli(args, parser)
    if args.inception_weights is not None:
        parser.error("--inception-weights scores image models (e.g. --model digits-sngan); "
                     f"{args.model or 'the default toy model'} is not one.")
    if args.model != "gaussian":
        return _run_zoo_compare(args, parser)
    args.chains = 256 if args.chains is None else args.chains
    _check_positive(parser, args, ["chains", "hmc_chains", "samples", "latent_dim", "data_dim"])
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    args.step_size = 0.05 if args.step_size is None else args.step_size
    if not args.step_size > 0:
        parser.error(f"--step-size must be > 0, got {args.step_size}")
    try:
        _check_output(args)
    except (ValueError, OSError) as error:
        parser.error(str(error))
    args.output.mkdir(parents=True, exist_ok=True)

    import ppl_ebm
    from ppl_ebm.diagnostics.summary import compare, format_table

    problem = ppl_ebm.linear_gaussian_problem(args.latent_dim, args.data_dim, seed=args.seed)
    runs = [(s, b) for b in args.backends for s in args.samplers]
    results, errors = {}, {}
    for index, (sampler, backend) in enumerate(runs, start=1):
        name = f"{sampler}/{backend}"
        print(f"[{index}/{len(runs)}] {name} ...", file=sys.stderr, flush=True)
        spec = get_sampler(sampler)
        options = {"step_size": args.step_size} if spec.kernel == "ula" else {}
        chains = args.chains if spec.family == "langevin" else args.hmc_chains
        result = ppl_ebm.sample(
            problem.ebm, sampler, backend, num_chains=chains, num_warmup=args.warmup,
            num_samples=args.samples, seed=args.seed, progress_bar=not args.no_progress, **options,
        )
        results[name] = result
        draws = result.latents.astype(np.float64)
        errors[name] = {
            "mean_abs_error_max": float(np.abs(draws.mean(axis=(0, 1)) - problem.mean).max()),
            "sd_abs_error_max": float(
                np.abs(draws.std(axis=(0, 1)) - np.sqrt(np.diag(problem.covariance))).max()
            ),
        }
    table = compare(results)
    text = format_table(table)
    print(text)
    print("\nError against the exact Gaussian target (max over latent dims):")
    for name, error in errors.items():
        print(f"  {name:<12} mean {error['mean_abs_error_max']:.4f}   sd {error['sd_abs_error_max']:.4f}")
    metrics = {
        "target": "analytic Gaussian (linear generator, quadratic critic)",
        "latent_dim": args.latent_dim,
        "data_dim": args.data_dim,
        "seed": args.seed,
        "num_warmup": args.warmup,
        "num_samples": args.samples,
        "methods": {
            name: {**_jsonable(table.loc[name].to_dict()), **errors[name]} for name in results
        },
    }
    (args.output / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (args.output / "report.md").write_text(
        "# ppl-ebm compare\n\n"
        f"Target: {metrics['target']}, latent dim {args.latent_dim}, seed {args.seed}, "
        f"{args.warmup} warmup + {args.samples} draws per chain.\n\n```\n{text}\n```\n"
    )
    print(f"\nWrote {args.output / 'metrics.json'} and {args.output / 'report.md'}")
    return 0


def _jsonable(row: dict) -> dict:
    out = {}
    for key, value in row.items():
        if isinstance(value, (np.integer,)):
            value = int(value)
        elif isinstance(value, (np.floating, float)):
            value = None if not np.isfinite(value) else float(value)
        elif isinstance(value, np.bool_):
            value = bool(value)
        out[key] = value
    return out


def _sample_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "sample", help="sample a zoo model or a model file into a Zarr store (one process, torchrun, JAX processes)",
        description="Sample a zoo model (name or folder) or a Python file defining `target` (a LatentEBM) or "
        "`model` (Pyro for torch, NumPyro for jax). Under torchrun, or with --coordinator (JAX), each process "
        "samples its block of the chains into the one store; the same command again resumes a killed run.")
    parser.add_argument("--model", required=True, help="zoo name or folder, or a .py file")
    parser.add_argument("--calibrated", action="store_true", help="zoo models: the calibrated critic (DDLS 5.2)")
    parser.add_argument("--sampler", default="mala", choices=sampler_names("streaming"))
    parser.add_argument("--backend", default="jax", choices=BACKENDS)
    parser.add_argument("--chains", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--thinning", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a sampler option, e.g. --option step_size=0.05 (repeatable)")
    parser.add_argument("--output", type=Path, required=True, help="the run's Zarr store (a path ending in .zarr)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: every local JAX device)")
    parser.add_argument("--coordinator", default=None,
                        help="JAX multi-process: HOST:PORT of process 0 (Slurm: omit, read from its variables)")
    parser.add_argument("--num-processes", type=int, default=None, help="JAX multi-process: processes in all")
    parser.add_argument("--process-id", type=int, default=None, help="JAX multi-process: this process's index")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _run_sample(args, parser) -> int:
    import ppl_ebm
    from ppl_ebm.drivers.zarr_store import is_zarr_path
    from ppl_ebm.launch import join_process_group, load_target, parse_options

    try:
        if not is_zarr_path(args.output):
            raise ValueError(f"--output must be a Zarr store path ending in .zarr, got {str(args.output)!r}.")
        options = parse_options(args.option)
        index, count = join_process_group(args.backend, args.device, args.coordinator, args.num_processes,
                                          args.process_id)
        target = load_target(args.model, args.calibrated)
        result = ppl_ebm.sample(target, args.sampler, args.backend, num_chains=args.chains, num_warmup=args.warmup,
                                num_samples=args.samples, seed=args.seed, thinning=args.thinning,
                                draws_dir=args.output, device=args.device,
                                progress_bar=not args.no_progress and index == 0, **options)
    except ValueError as error:
        parser.error(str(error))
    from ppl_ebm.drivers.zarr_store import chain_blocks

    start, stop = chain_blocks(args.chains, count)[index]
    print(f"process {index} of {count}: chains {start}:{stop} -> {args.output} "
          f"(resumed at step {result.stats['resumed_at_iteration']}, {result.stats['wall_seconds']:.1f} s)")
    return 0


def _report_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="MCMC diagnostics of a stored run (tables and ArviZ plots)",
        description="Write ESS bulk/tail, rank R-hat, MCSE and nested R-hat tables and ArviZ's rank, trace, "
        "autocorrelation and ESS-evolution plots of the run stored at STORE (a draws_dir: Zarr or npy), read "
        "block by block.")
    parser.add_argument("store", type=Path, help="the run's draws_dir (run.zarr, or an npy store directory)")
    parser.add_argument("--output", type=Path, default=None, help="output folder (default: STORE_report)")
    parser.add_argument("--plot-chains", type=int, default=8, help="chains shown in the plots")
    parser.add_argument("--plot-dims", type=int, default=4, help="dimensions shown in the plots")


def _run_report(args, parser) -> int:
    from ppl_ebm.diagnostics.report import write_report

    output = args.output if args.output is not None else args.store.with_name(args.store.name + "_report")
    try:
        files = write_report(args.store, output, plot_chains=args.plot_chains, plot_dims=args.plot_dims)
    except ValueError as error:
        parser.error(str(error))
    for name, state in files.items():
        print(f"  {name:<18} {state}")
    print(f"Wrote {output}")
    return 0


def _elsewhere(module: str, name: str):
    """A function of another CLI module (a parser builder or a runner), imported when called."""
    def call(*args):
        import importlib

        return getattr(importlib.import_module(module), name)(*args)
    return call


_classifier_parser = _elsewhere("ppl_ebm.cli_images", "classifier_parser")
# One object for the four latent commands, whose parsers one call adds: built once.
_latent_parsers = _elsewhere("ppl_ebm.cli_latent", "latent_parsers")


# Each command -> (the function adding its parser, some add several; its runner). Building a
# parser imports what its defaults come from (torch, POT, the studies: seconds), so a run builds
# only its own command's; help, no command or an unknown one builds all, to list them.
_COMMANDS = {
    "compare": (_compare_parser, _run_compare), "train": (_train_parser, _run_train),
    "calibrate": (_calibrate_parser, _run_calibrate), "mixing": (_mixing_parser, _run_mixing),
    "samplers": (_samplers_parser, _run_samplers), "sample": (_sample_parser, _run_sample),
    "report": (_report_parser, _run_report), "egan-table": (_egan_table_parser, _run_egan_table),
    "egan-sample": (_egan_sample_parser, _run_egan_sample), "egan-rank": (_egan_rank_parser, _run_egan_rank),
    "train-classifier": (_classifier_parser, _elsewhere("ppl_ebm.cli_images", "run_train_classifier")),
    **{command: (_latent_parsers, _elsewhere("ppl_ebm.cli_latent", "run_" + command.replace("-", "_")))
       for command in ("train-vae", "train-flow", "train-latent-ebm", "train-pixel-ebm")},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ppl-ebm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command")
    words = list(sys.argv[1:] if argv is None else argv)
    # The command is the first word: the top-level parser has no option but -h.
    named = [words[0]] if words and words[0] in _COMMANDS else list(_COMMANDS)
    builders = dict.fromkeys(_COMMANDS[command][0] for command in named)
    for build in builders:
        build(subparsers)
    args = parser.parse_args(argv)
    args.argv = words  # recorded in model cards
    if args.command is None:
        parser.print_help()
        return 2
    start = time.perf_counter()
    code = _COMMANDS[args.command][1](args, subparsers.choices[args.command])
    print(f"Done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
