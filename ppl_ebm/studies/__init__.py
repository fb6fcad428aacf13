"""The studies behind ``ppl-ebm compare``, ``mixing`` and ``samplers``, each beside its report."""
