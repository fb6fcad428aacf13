"""What DDLS compares against: the generator alone, DRS, MH-GAN and DOT, one module each
(``generator_only``, ``drs``, ``mh_gan``, ``dot``; shared helpers in ``common``).

The functions are re-exported under their modules' names, so ``ppl_ebm.baselines.drs`` is the
function; its module is ``sys.modules["ppl_ebm.baselines.drs"]`` (``from
ppl_ebm.baselines.drs import ...`` reads the module as usual).
"""

from ppl_ebm.baselines.common import BaselineResult, BaselineStats, DOTStats, DRSStats, MHGANStats
from ppl_ebm.baselines.dot import dot, estimate_lipschitz
from ppl_ebm.baselines.drs import drs
from ppl_ebm.baselines.generator_only import generator_only
from ppl_ebm.baselines.mh_gan import mh_gan

__all__ = [
    "BaselineResult", "BaselineStats", "DOTStats", "DRSStats", "MHGANStats", "dot", "drs", "estimate_lipschitz",
    "generator_only", "mh_gan",
]
