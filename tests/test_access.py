"""Who may reach the studio and its /v1 API, in each way it can be served."""
import httpx
import pytest
from pydantic import SecretStr

from conftest import free_port
from inkstone.webui.access import check_exposure, is_loopback


def webui(cfg, **changes):
    return cfg.webui.model_copy(update={"port": free_port(), **changes})


def test_loopback_names_and_addresses():
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "127.0.0.2"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.20", "studio.example"))


def test_exposure_without_a_login_is_refused_with_what_to_set(cfg):
    from inkstone.config import WebUIConfig

    assert WebUIConfig().host == "127.0.0.1"  # the default serves this machine only
    check_exposure(WebUIConfig())
    with pytest.raises(ValueError, match="INKSTONE_WEBUI__USERNAME"):
        check_exposure(WebUIConfig(host="0.0.0.0"))
    with pytest.raises(ValueError, match="--share"):
        check_exposure(WebUIConfig(share=True))
    check_exposure(WebUIConfig(host="0.0.0.0", username="ink", password=SecretStr("stone")))


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["loopback-with-login", "all-interfaces-with-login-and-key"])
def test_v1_needs_the_key_or_a_logged_in_session(setting, cfg, rt):
    from inkstone.webui.app import AppContext, launch

    key = "sesame" if "key" in setting else None
    w = webui(cfg, host="127.0.0.1" if setting.startswith("loopback") else "0.0.0.0", username="ink",
              password=SecretStr("stone"), api_key=SecretStr(key) if key else None)
    demo = launch(AppContext(cfg=cfg.model_copy(update={"webui": w}), rt=rt), block=False)
    url = f"http://127.0.0.1:{w.port}"
    chat = {"model": rt.engine.model_name, "messages": [{"role": "user", "content": "宝玉"}],
            "max_tokens": 3, "stream": True}

    def statuses(client: httpx.Client) -> tuple[int, int]:
        models = client.get(f"{url}/v1/models").status_code
        with client.stream("POST", f"{url}/v1/chat/completions", json=chat) as r:
            body = r.read().decode()
            streamed = r.status_code if r.status_code != 200 or "[DONE]" in body else -1
        return models, streamed

    try:
        with httpx.Client(timeout=60) as anonymous:
            assert statuses(anonymous) == (401, 401)
        with httpx.Client(timeout=60, headers={"Authorization": "Bearer wrong"}) as wrong:
            assert statuses(wrong) == (401, 401)
        with httpx.Client(timeout=60) as browser:
            assert browser.post(f"{url}/login", data={"username": "ink", "password": "stone"}).status_code == 200
            assert statuses(browser) == (200, 200)
        if key:
            with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {key}"}) as keyed:
                assert statuses(keyed) == (200, 200)
    finally:
        demo.close()


def test_the_concurrency_gate_counts_per_client_and_in_all():
    from inkstone.api.errors import ApiError
    from inkstone.api.limits import ConcurrencyGate

    gate = ConcurrencyGate(per_client=2, total=3)
    gate.acquire("a", 2)
    with pytest.raises(ApiError) as err:
        gate.acquire("a", 1)
    assert err.value.status == 429 and "max_concurrent_per_client" in err.value.message
    gate.acquire("b", 1)
    with pytest.raises(ApiError, match="limits.max_concurrent\\)"):
        gate.acquire("c", 1)
    gate.release("a", 2)
    with gate.hold("c", 2):
        with pytest.raises(ApiError):
            gate.acquire("d", 1)
    gate.acquire("d", 2)
    assert err.value.response().headers["retry-after"] == "1"
