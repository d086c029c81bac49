"""Best-of-n pieces: :mod:`.select` (samples and the argmax) and :mod:`.curves` (best-of-m, agreement,
length bias); :mod:`sflib.best_of_n` adds reward-model loading, scoring, the AlpacaEval layout and the CLI."""
