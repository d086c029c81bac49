"""Serve a GGUF model (default: the bundled SmolLM2-135M-Instruct) through llama.cpp's OpenAI-compatible server.

    python -m sflib.generation.serve_local --port 8080 [--model PATH.gguf] [--alias smollm2] [--n-ctx 4096]

then judge with ``--judge smollm2-llamacpp`` (``sflib/configs/judges/smollm2-llamacpp.yaml``: the
endpoint ``http://127.0.0.1:8080/v1``, or ``$SFLIB_JUDGE_URL``). Needs the ``local-judge`` extra
(``pip install "llama-cpp-python[server]"``, which compiles llama.cpp: ~10 minutes on a CPU).

Why not ``python -m llama_cpp.server``: on CPUs that report AMX, llama.cpp's "extra buffer types"
(weight repacking for the AMX matrix path, ``ggml_backend_amx_mul_mat``) crash the server with a
segmentation fault on its first request. Loading the model with ``use_extra_bufts=False`` avoids
it. ``llama_cpp.Llama`` and the server's ``ModelSettings`` expose no such option, so this module sets
it in the model parameters that ``Llama`` starts from (``llama_model_default_params``), in this
process only, then starts the stock server app (``llama_cpp.server.app.create_app``) with uvicorn.
"""
from __future__ import annotations

import argparse
import sys


def disable_extra_buffer_types() -> None:
    """Make every ``llama_cpp.Llama`` loaded in this process use ``use_extra_bufts=False``."""
    import llama_cpp.llama_cpp as lib

    original = getattr(lib.llama_model_default_params, "_sflib_original", lib.llama_model_default_params)

    def default_params():
        params = original()
        params.use_extra_bufts = False
        return params

    default_params._sflib_original = original  # patching twice wraps the original once
    lib.llama_model_default_params = default_params


def create_app(model: str | None = None, alias: str = "smollm2", n_ctx: int = 4096, n_threads: int | None = None,
               verbose: bool = False):
    """The llama.cpp server app for ``model`` (default: the bundled SmolLM2 GGUF), AMX-safe."""
    from llama_cpp.server.app import create_app as llama_create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    from .models import smollm2_gguf

    disable_extra_buffer_types()
    path = str(model or smollm2_gguf())
    options = dict(model=path, model_alias=alias, n_ctx=n_ctx, verbose=verbose)
    if n_threads:
        options["n_threads"] = n_threads
    return llama_create_app(server_settings=ServerSettings(), model_settings=[ModelSettings(**options)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sflib.generation.serve_local", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a .gguf file (default: the bundled SmolLM2-135M-Instruct)")
    parser.add_argument("--alias", default="smollm2", help="the model name clients ask for")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--n-ctx", type=int, default=4096, help="context length in tokens (the rating prompt "
                                                                 "alone is ~1,500)")
    parser.add_argument("--n-threads", type=int, help="CPU threads (default: llama.cpp's choice)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    try:
        import uvicorn

        app = create_app(args.model, alias=args.alias, n_ctx=args.n_ctx, n_threads=args.n_threads,
                         verbose=args.verbose)
    except ModuleNotFoundError as e:
        print(f"error: {e.name} is not installed; install the local judge extra: "
              f'pip install "llama-cpp-python[server]"', file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"serving {args.model or 'the bundled SmolLM2-135M-Instruct'} as '{args.alias}' on "
          f"http://{args.host}:{args.port}/v1 (use_extra_bufts=False)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
