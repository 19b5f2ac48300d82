"""Drop-in replacements for the mixture step of the tabular-synthesis libraries.

- :mod:`gpuvgm.integrations.rdt`: ``ClusterBasedNormalizer``, RDT's transformer of the same name
  running on gpuvgm (needs ``rdt``: ``pip install 'gpuvgm[rdt]'``).
- :mod:`gpuvgm.integrations.ctgan`: ``use_gpuvgm()``, one line that makes CTGAN's and TVAE's
  ``DataTransformer`` fit gpuvgm mixtures (needs ``ctgan``: ``pip install 'gpuvgm[ctgan]'``).

Nothing here is imported by ``import gpuvgm``: RDT and CTGAN stay optional.
"""
