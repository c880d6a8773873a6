"""Outputs: what a survey round publishes, from an index estimate.

* :mod:`.flags` -- :func:`~.flags.publication_flags`, :func:`~.flags.flag_estimate`:
  reliability flags, a status and a reason per domain (suppression is a property of the
  estimate, honoured by every other output).
* :mod:`.ranking` -- :func:`~.ranking.league_table`, :func:`~.ranking.rank_intervals`:
  ranks with rank intervals, P(top k)/P(bottom k) and comparisons with a reference.
* :mod:`.change` -- :func:`~.change.change`, :func:`~.change.map_items`: change between
  two rounds with its interval, items mapped across questionnaire versions.
* :mod:`.plotting` -- the figures (matplotlib, loaded when a figure is drawn).
* :mod:`.report` -- :func:`~.report.build_report`: the HTML/Excel/PDF report.

The public names are re-exported by :mod:`satsample`; the submodules are imported on
first use (nothing is imported with this package).  The former paths
(``satsample.ranking``, ...) are deprecated aliases for one release.
"""
