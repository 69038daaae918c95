"""Shot boundaries: which frames belong to a transition, and the clean shots between them.

* ``auto`` (default): ``transnetv2`` on a GPU, ``cascade`` on a CPU.
* ``transnetv2`` (``transnet.py``): the TransNetV2 network on every frame; finds cuts and
  dissolves.
* ``cascade`` (``cascade.py``): cheap frame differences on every frame, TransNetV2 where they
  are unsure; the CPU default.
* ``adaptive`` (``adaptive.py``): PySceneDetect's AdaptiveDetector; fast.

Each of the three is united with ``gradual.TransitionRule``: hard cuts (``cutrule.py``, on
every source frame through ``source_stream``) and gradual transitions (``gradual.py``:
dissolves, fades, dips, on the grid) found from frame differences alone, which no network
overrules. ``base.TwoRate`` puts the two rates' verdicts together on the grid.
* ``none`` (``base.py``): the whole file is one shot (already-cut material).

``base.py`` holds the interface, ``tracker.py`` turns a mask into shots, ``registry.py``
finds detectors by name (``make_detector``). A new detector is one file plus one entry point
in the ``wandata.detectors`` group; ``--detector`` accepts every registered name.
"""
