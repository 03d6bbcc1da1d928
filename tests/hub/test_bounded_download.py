"""A Hub or mirror that makes no progress ends in a clear error, in bounded time and memory.

The server truncates every body half-way and ignores ``Range``: every resume starts again from byte 0
and stops at the same place. huggingface_hub (2.4.0) alone retries this for ever, its process growing
~16 MB/s; ``mindcv_halonet.weights.hub`` stops its download child when the partial file has not grown
for ``MINDCV_HALONET_HUB_STALL_SECONDS`` (3 s here) or its memory passes 512 MiB + 2 x the file size.
``create_model`` runs in a child interpreter: the ``timeout`` of that run is the time bound (a hang
fails the test), ``ru_maxrss`` of its children the memory bound.
"""
from tests.conftest import parse_result, run_python, subprocess_env
from tests.hub.conftest import REPO, VARIANT

# the download child (python + huggingface_hub + httpx) stays far below this; the runaway reached 12.9 GB
MEMORY_BOUND_MB = 1024


def test_server_that_truncates_and_ignores_range_is_a_clear_error_in_bounded_time_and_memory(hub, backend, tmp_path):
    hub.server.files[REPO]["mode"] = "truncate_ignore_range"
    code = f"""
        import json, resource
        from mindcv.models import create_model
        try:
            create_model("{VARIANT}", pretrained=True)
            error = None
        except Exception as exc:
            error = type(exc).__name__ + ": " + str(exc)
        print("@@RESULT@@" + json.dumps(dict(
            error=error, children_max_rss_mb=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)))
    """
    proc = run_python(code, cwd=tmp_path, env=subprocess_env(MINDCV_HALONET_HUB_STALL_SECONDS="3"), timeout=300)
    res = parse_result(proc.stdout)
    error = res["error"] or ""
    assert error.startswith("PretrainedWeightsError: pretrained=True for halonet_26t: "), error
    assert f"{hub.server.endpoint}/{REPO}/resolve/main/model.safetensors" in error, error
    assert "Nothing was cached" in error, error
    gets = [path for method, path in hub.server.requests if method == "GET"]
    import huggingface_hub

    if huggingface_hub.__version__.startswith("0."):
        # requests raises ChunkedEncodingError on the first short body, which 0.x does not retry
        assert "the response was truncated after" in error and "IncompleteRead" in error, error
    else:
        # httpx's RemoteProtocolError is retried with Range, forever: the stall bound stops it
        assert "download stopped: no progress for 3 s" in error and "ignores Range" in error, error
        assert "MINDCV_HALONET_HUB_STALL_SECONDS" in error, error
        assert len(gets) >= 2, hub.server.requests  # it did retry (and was stopped), not refuse at once
    assert 0 < res["children_max_rss_mb"] < MEMORY_BOUND_MB, res
    assert hub.files() == []


def test_stall_setting_is_checked(hub, backend, monkeypatch):
    import pytest

    from mindcv.models import create_model

    from mindcv_halonet.weights.errors import PretrainedWeightsError

    monkeypatch.setenv("MINDCV_HALONET_HUB_STALL_SECONDS", "soon")
    with pytest.raises(PretrainedWeightsError, match=r"MINDCV_HALONET_HUB_STALL_SECONDS='soon' is invalid; "
                                                     r"expected a number of seconds > 0"):
        create_model(VARIANT, pretrained=True)
    assert hub.files() == []
