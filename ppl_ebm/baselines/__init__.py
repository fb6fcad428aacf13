"""What DDLS compares against: the generator alone, DRS, MH-GAN and DOT."""

from ppl_ebm.baselines.methods import BaselineResult, dot, drs, estimate_lipschitz, generator_only, mh_gan

__all__ = ["BaselineResult", "dot", "drs", "estimate_lipschitz", "generator_only", "mh_gan"]
