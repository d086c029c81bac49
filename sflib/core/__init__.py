"""The small core every stage uses: where things live (:mod:`.paths`), the record types and the
original layouts (:mod:`.data`), statistics (:mod:`.stats`), token prices (:mod:`.costs`), the vendored
data files (:mod:`.catalog`), the paper's own statements (:mod:`.paper`) and the
Alpaca prompt (:mod:`.prompts`). Nothing here imports a stage package at import time (``core`` never imports
``io``; the readers import ``core``'s record types and :class:`~sflib.core.data.DataError`)."""
