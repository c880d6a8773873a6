"""One module per implementation; each exposes ``prepare(task, df, meta, reps)``.

``prepare`` does the untimed set-up (building the peer's input objects) and
returns a zero-argument callable: the timed call(s), returning a dict of
numpy arrays for the correctness check (``est``/``se`` of shape (G, 22), or
``w`` for weighting tasks).
"""
