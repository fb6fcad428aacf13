"""The image parts of ``ppl-ebm``: ``train`` on an image set (digits, or MNIST / Fashion-MNIST /
CIFAR-10 from ``--data-root``), ``train-classifier`` (the feature classifier of the image
metrics) and ``compare --model <image model>``. Kept apart from :mod:`ppl_ebm.cli` so that file
stays the argument parsing of the toy jobs."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_image_train_arguments", "classifier_parser", "is_image_model", "run_image_compare_cli", "run_image_train",
           "run_train_classifier"]


def add_image_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ppl-ebm train`` that only image sets read."""
    from ppl_ebm.training.image_gan import IMAGE_GANS

    group = parser.add_argument_group("image data sets")
    group.add_argument("--architecture", default="dcgan", choices=sorted(IMAGE_GANS),
                       help="dcgan (NS loss) or sngan (spectral norm, hinge loss); default dcgan")
    group.add_argument("--latent-dim", type=int, default=None, help="latent dimension (images: default 32)")
    group.add_argument("--data-root", type=Path, default=None,
                       help="folder holding MNIST/raw, FashionMNIST/raw or cifar-10-batches-py (not for digits)")
    group.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (image GANs train in torch)")


def run_image_train(args, parser: argparse.ArgumentParser) -> int:
    from ppl_ebm.data.images import load_images
    from ppl_ebm.drivers.devices import torch_device
    from ppl_ebm.training.image_gan import ImageGANConfig
    from ppl_ebm.zoo.image_build import train_image_zoo_model

    defaults = ImageGANConfig()
    try:
        config = ImageGANConfig(
            dataset=args.dataset, architecture=args.architecture, loss=args.loss or "",
            iterations=defaults.iterations if args.iterations is None else args.iterations,
            batch_size=defaults.batch_size if args.batch_size is None else args.batch_size,
            latent_dim=defaults.latent_dim if args.latent_dim is None else args.latent_dim, seed=args.seed).validate()
        torch_device(args.device)
        load_images(args.dataset, "held_out", args.data_root)  # a missing folder fails before training
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    command = "ppl-ebm " + " ".join(args.argv)
    folder = train_image_zoo_model(config, args.name, args.output, root=args.data_root, device=args.device,
                                   progress_bar=not args.no_progress, command=command)
    print((folder / "MODEL_CARD.md").read_text())
    print(f"Wrote {folder}")
    return 0


def classifier_parser(subparsers) -> None:
    from ppl_ebm.data.images import image_dataset_names
    from ppl_ebm.training.classifier import ClassifierConfig

    defaults = ClassifierConfig()
    parser = subparsers.add_parser(
        "train-classifier", help="train the feature classifier of the image metrics",
        description="Train an image classifier on a data set's train split, state its held-out accuracy, and save "
        "it to OUTPUT/classifiers/NAME with its card; its features score image samples.")
    parser.add_argument("--dataset", default="digits", choices=image_dataset_names())
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--name", default=None, help="folder name (default DATASET-cnn)")
    parser.add_argument("--output", type=Path, default=Path("models"), help="zoo folder (default models/)")


def run_train_classifier(args, parser: argparse.ArgumentParser) -> int:
    from ppl_ebm.data.images import load_images
    from ppl_ebm.training.classifier import ClassifierConfig
    from ppl_ebm.zoo.classifiers import train_zoo_classifier
    from ppl_ebm.zoo.image_build import classifier_name

    try:
        config = ClassifierConfig(dataset=args.dataset, epochs=args.epochs, seed=args.seed).validate()
        load_images(args.dataset, "held_out", args.data_root)
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    folder = train_zoo_classifier(config, args.name or classifier_name(args.dataset), args.output,
                                  root=args.data_root, command="ppl-ebm " + " ".join(args.argv))
    print((folder / "MODEL_CARD.md").read_text())
    print(f"Wrote {folder}")
    return 0


def is_image_model(name: str) -> bool:
    """Whether ``name`` is a zoo name or folder of an image model (False when it is no model at all)."""
    import json

    from ppl_ebm.zoo.store import model_dir, model_kind

    try:
        return model_kind(json.loads((model_dir(name) / "config.json").read_text())) == "image"
    except (FileNotFoundError, ValueError, AttributeError):
        return False


def run_image_compare_cli(args, parser: argparse.ArgumentParser) -> int:
    import shlex
    import sys

    from ppl_ebm.studies.image_compare import (DEFAULT_IMAGE_METHODS, IMAGE_SWEEP_STEPS, ImageCompareConfig,
                                               run_image_compare)
    from ppl_ebm.studies.image_compare_report import format_image_table, write_image_report

    defaults = ImageCompareConfig()
    try:
        from ppl_ebm.validation import check_output_dir

        check_output_dir(args.output, "--output")
        config = ImageCompareConfig(
            model=args.model, methods=tuple(args.methods) if args.methods else DEFAULT_IMAGE_METHODS,
            num_samples=defaults.num_samples if args.num_samples is None else args.num_samples,
            langevin_steps=defaults.langevin_steps if args.steps is None else args.steps,
            paper_steps=defaults.paper_steps if args.paper_steps is None else args.paper_steps,
            trace_samplers=args.trace_samplers, ex2mcmc_protocol=args.ex2mcmc_protocol, hmc_chains=args.hmc_chains,
            hmc_warmup=defaults.hmc_warmup if args.hmc_warmup is None else args.hmc_warmup,
            hmc_draws=defaults.hmc_draws if args.hmc_draws is None else args.hmc_draws,
            ula_step_size=args.step_size, sweep_steps=IMAGE_SWEEP_STEPS if args.sweep is None else tuple(args.sweep),
            sweep_chains=defaults.sweep_chains if args.sweep_chains is None else args.sweep_chains, seed=args.seed,
            data_root=None if args.data_root is None else str(args.data_root), progress_bar=not args.no_progress,
            device=args.device, raw_critic=args.raw_critic,
            mh_gan_chain_length=(defaults.mh_gan_chain_length if args.mh_gan_chain_length is None
                                 else args.mh_gan_chain_length),
            inception_weights=None if args.inception_weights is None else str(args.inception_weights)).validate()
    except (ValueError, OSError, ImportError) as error:  # ImportError: --inception-weights without torch-fidelity
        parser.error(str(error))
    output = run_image_compare(config, log=lambda message: print(message, file=sys.stderr, flush=True))
    print(format_image_table(output.metrics))
    paths = write_image_report(output, args.output)
    if args.record_in_card:
        from ppl_ebm.zoo.image_build import record_image_compare_in_card

        record_image_compare_in_card(config.model, output,  # the folder or name given, not the stored name
                                     "ppl-ebm " + " ".join(shlex.quote(a) for a in args.argv))
    print(f"\nWrote {', '.join(str(p) for p in paths.values())}")
    return 0
