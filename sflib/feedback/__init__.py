"""Stages 02 and 03 — acquiring feedback: the annotation engine (:mod:`.annotate`) and its store
(:mod:`.store`), reply parsing (:mod:`.parsing`, :mod:`.logprobs`), ratings (:mod:`.ratings`),
rankings (:mod:`.rankings`), judge panels (:mod:`.panels`) and hard or soft verdicts
(:mod:`.soft_verdicts`)."""
