"""Stages 01 and 06 (sampling) — policies and their responses: policy files (:mod:`.policies`), the
sampling front end (:mod:`.generate`), local ``transformers`` and OpenAI-compatible samplers
(:mod:`.sampling_local`, :mod:`.sampling_openai`), the bundled models (:mod:`.models`) and a local
llama.cpp server (:mod:`.serve_local`)."""
