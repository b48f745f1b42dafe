"""The web app in-process: the public page shows what it should and nothing sensitive; the
dashboard signs in operators and admins only, and every action is confirmed, CSRF-checked,
role-checked and audited under the key's name."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import yaml
from starlette.testclient import TestClient
from tests.conftest import Workspace, make_workspace
from tests.web_support import Keys, csrf_of, make_keys, open_incident, web_settings

from quality_gates import incidents
from quality_gates.config import load_config, render_starter
from quality_gates.store import audit
from quality_gates.store import settings as runtime_settings
from quality_gates.store.registry import get_alias
from quality_gates.web.app import create_web_app

CANARY = "CANARY-7f3a9c1e"


@pytest.fixture
def client(workspace: Workspace) -> Iterator[TestClient]:
    with TestClient(create_web_app(web_settings(workspace))) as test_client:
        yield test_client


def sign_in(client: TestClient, key: str) -> object:
    page = client.get("/login")
    return client.post(
        "/login", data={"key": key, "csrf": csrf_of(page.text)}, follow_redirects=False
    )


def act(client: TestClient, name: str, **fields: str) -> object:
    """Post an action and confirm it, as a person clicking twice would."""
    token = csrf_of(client.get("/").text)
    preview = client.post(f"/actions/{name}", data={"csrf": token, **fields})
    assert preview.status_code == 200, preview.text
    assert 'id="confirm"' in preview.text
    return client.post(
        f"/actions/{name}",
        data={"csrf": token, "confirmed": "1", **fields},
        follow_redirects=False,
    )


# --- the public page --------------------------------------------------------------------


def test_status_json_lists_the_service_and_each_provider_without_model_ids(
    workspace: Workspace, client: TestClient
) -> None:
    data = client.get("/status.json").json()
    assert [c["id"] for c in data["components"]] == ["service", "bedrock", "google", "meta"]
    assert all(len(c["uptime"]["days"]) == 90 for c in data["components"])
    assert all(day["availability"] is None for day in data["components"][0]["uptime"]["days"])
    text = client.get("/status.json").text + client.get("/status").text
    for model in load_config(workspace.config_path).config.models:
        assert model.id not in text
        assert model.provider_model not in text


def test_show_models_names_the_models_of_each_component(workspace: Workspace) -> None:
    config = load_config(workspace.config_path).config
    config.web.status_page.show_models = True
    with TestClient(create_web_app(web_settings(workspace, config))) as test_client:
        data = test_client.get("/status.json").json()
    by_id = {c["id"]: c for c in data["components"]}
    assert by_id["service"]["models"] == ["claude-3-5-haiku"]
    assert by_id["google"]["models"] == ["gemini-1-5-flash"]


def test_the_emergency_setting_puts_a_banner_on_the_status_page(
    workspace: Workspace, client: TestClient
) -> None:
    with workspace.conn.write():
        runtime_settings.put(
            workspace.conn,
            "production",
            "emergency",
            {
                "mode": "degraded",
                "reason": f"all providers down {CANARY}",
                "since": time.time(),
                "actor": CANARY,
                "incident_id": None,
            },
            actor=CANARY,
        )
    page = client.get("/status")
    assert "Degraded mode." in page.text
    data = client.get("/status.json").json()
    assert data["banner"]["mode"] == "degraded"
    assert data["components"][0]["status"] == "degraded_performance"
    assert CANARY not in page.text


def test_public_updates_show_public_notes_and_fixed_texts_never_internal_ones(
    workspace: Workspace, client: TestClient
) -> None:
    incident = open_incident(workspace)
    incidents.add_note(workspace.conn, incident, "internal: restarting pods", actor="ops")
    incidents.add_note(
        workspace.conn,
        incident,
        "We have moved traffic to a healthy provider.",
        actor="ops",
        public=True,
        state="identified",
    )
    (shown,) = client.get("/status.json").json()["incidents"]
    assert shown["title"] == "Errors from an AI provider"
    assert shown["impact"] == "major"
    assert shown["status"] == "identified"
    assert shown["components"] == ["AI service", "bedrock"]
    texts = [u["text"] for u in shown["updates"]]
    assert texts[0].startswith("The cause has been identified")
    assert "We have moved traffic to a healthy provider." in texts
    assert texts[-1] == "We are investigating the issue."
    assert "restarting pods" not in client.get("/status").text


def test_the_headline_never_says_operational_beside_an_open_major_incident(
    workspace: Workspace, client: TestClient
) -> None:
    """No traffic measured (no data), yet a P1 incident is open: the headline says so."""
    open_incident(workspace)
    status = client.get("/status.json").json()
    (incident,) = status["incidents"]
    assert incident["impact"] == "major"
    assert status["status"]["indicator"] == "partial_outage"
    assert "operational" not in status["status"]["description"].lower()


def test_a_canary_secret_in_every_sensitive_spot_never_reaches_the_public_pages(
    tmp_path: object, workspace: Workspace
) -> None:
    data = yaml.safe_load(render_starter("canary"))
    data["project"] = f"project-{CANARY}"
    data["models"][0]["name"] = f"anthropic.{CANARY}"
    data["notifications"]["channels"][0]["url"] = f"https://hooks.example/{CANARY}"
    data["providers"][1]["credentials"] = {"api_key": f"KEY_{CANARY.replace('-', '_')}"}
    ws = make_workspace(workspace.root / "canary", workspace.db_url, yaml.safe_dump(data))
    keys = make_keys(ws, prefix=f"{CANARY}-")
    incident = open_incident(ws, title=f"p95 for model claude-3-5-haiku {CANARY}")
    incidents.add_note(ws.conn, incident, f"internal {CANARY}", actor=CANARY)
    config = load_config(ws.config_path).config
    with TestClient(create_web_app(web_settings(ws, config))) as web:
        assert sign_in(web, keys.operator).status_code == 303
        act(web, "ack", incident=str(incident))
        act(web, "note", incident=str(incident), text=f"second internal {CANARY}")
        act(web, "silence", matchers="provider=meta", duration="1h", comment=CANARY)
        act(web, "rollback", to="previous-stable", reason=f"rollback {CANARY}")
        act(web, "failover", source="bedrock", target="google", reason=f"failover {CANARY}")
        with ws.conn.write():
            runtime_settings.put(
                ws.conn,
                "production",
                "emergency",
                {"mode": "shutdown", "reason": CANARY, "since": 1.0, "actor": CANARY},
                actor=CANARY,
            )
        incidents.resolve(ws.conn, config, incident, actor=CANARY, reason=CANARY)
        dashboard = web.get("/dashboard.json").text
        public = web.get("/status").text + web.get("/status.json").text
    assert dashboard.count(CANARY) > 5  # the secret really is in the data the pages read
    assert "Emergency stop" in public
    assert "resolved" in public
    assert CANARY not in public
    assert "claude-3-5-haiku" not in public


def test_pages_carry_security_headers(client: TestClient) -> None:
    public = client.get("/status")
    assert "script-src 'self'" in public.headers["content-security-policy"]
    assert public.headers["x-frame-options"] == "DENY"
    login = client.get("/login")
    assert login.headers["cache-control"] == "no-store"


# --- signing in -------------------------------------------------------------------------


@pytest.fixture
def keys(workspace: Workspace) -> Keys:
    return make_keys(workspace)


def test_an_operator_key_signs_in_with_a_strict_http_only_cookie(
    client: TestClient, keys: Keys
) -> None:
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    response = sign_in(client, keys.operator)
    assert response.status_code == 303
    cookie = next(c for c in response.headers.get_list("set-cookie") if "qg_session=" in c)
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    page = client.get("/")
    assert "operator-key" in page.text
    assert "Open incidents" in page.text
    assert client.get("/dashboard.json").json()["environment"] == "production"


def test_a_wrong_key_is_refused(client: TestClient, keys: Keys) -> None:
    response = sign_in(client, keys.operator + "x")
    assert response.status_code == 401
    assert "not valid" in response.text
    assert client.get("/dashboard.json").status_code == 401


def test_a_client_key_is_refused(client: TestClient, keys: Keys) -> None:
    response = sign_in(client, keys.client)
    assert response.status_code == 403
    assert "client role" in response.text
    assert "qg_session" not in response.headers.get("set-cookie", "")
    assert client.get("/", follow_redirects=False).status_code == 303


def test_a_login_without_its_form_token_is_refused(client: TestClient, keys: Keys) -> None:
    client.get("/login")
    response = client.post("/login", data={"key": keys.operator, "csrf": "forged"})
    assert response.status_code == 400
    assert client.get("/dashboard.json").status_code == 401


def test_wrong_keys_are_throttled_per_address(workspace: Workspace, keys: Keys) -> None:
    config = load_config(workspace.config_path).config
    config.web.login_attempts = 3
    with TestClient(create_web_app(web_settings(workspace, config))) as web:
        codes = [sign_in(web, "qg-wrong").status_code for _ in range(4)]
        assert codes == [401, 401, 401, 429]
        assert sign_in(web, keys.operator).status_code == 429


def test_a_tampered_session_cookie_is_refused(client: TestClient, keys: Keys) -> None:
    sign_in(client, keys.operator)
    value = client.cookies["qg_session"]
    body, mac = value.split(".")
    client.cookies.clear()
    client.cookies.set("qg_session", body[:-2] + "AA." + mac)
    assert client.get("/dashboard.json").status_code == 401


def test_revoking_a_key_ends_its_sessions(
    workspace: Workspace, client: TestClient, keys: Keys
) -> None:
    from quality_gates.gateway.keys import revoke_key

    sign_in(client, keys.operator)
    assert client.get("/dashboard.json").status_code == 200
    revoke_key(workspace.conn, name="operator-key", actor="tester")
    assert client.get("/dashboard.json").status_code == 401


# --- actions ----------------------------------------------------------------------------


def test_an_action_is_only_previewed_until_confirmed_then_audited_under_the_key_name(
    workspace: Workspace, client: TestClient, keys: Keys
) -> None:
    incident = open_incident(workspace)
    sign_in(client, keys.operator)
    token = csrf_of(client.get("/").text)
    preview = client.post("/actions/ack", data={"csrf": token, "incident": str(incident)})
    assert f"Acknowledge incident #{incident}?" in preview.text
    assert incidents.get_incident(workspace.conn, incident)["acknowledged_at"] is None
    done = act(client, "ack", incident=str(incident))
    assert done.headers["location"] == "/"
    assert incidents.get_incident(workspace.conn, incident)["acknowledged_by"] == "operator-key"
    (entry,) = audit.entries(workspace.conn, action="incident.ack")
    assert entry.actor == "operator-key"
    assert "acknowledged" in client.get("/").text


def test_an_action_without_the_session_token_is_refused_and_changes_nothing(
    workspace: Workspace, client: TestClient, keys: Keys
) -> None:
    incident = open_incident(workspace)
    sign_in(client, keys.operator)
    response = client.post(
        "/actions/ack", data={"csrf": "forged", "incident": str(incident), "confirmed": "1"}
    )
    assert response.status_code == 403
    assert incidents.get_incident(workspace.conn, incident)["acknowledged_at"] is None


def test_a_post_from_another_origin_is_refused(
    workspace: Workspace, client: TestClient, keys: Keys
) -> None:
    incident = open_incident(workspace)
    sign_in(client, keys.operator)
    token = csrf_of(client.get("/").text)
    response = client.post(
        "/actions/ack",
        data={"csrf": token, "incident": str(incident), "confirmed": "1"},
        headers={"origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert incidents.get_incident(workspace.conn, incident)["acknowledged_at"] is None


def test_rollback_and_failover_from_the_dashboard_move_the_store_and_the_timeline(
    workspace: Workspace, client: TestClient, keys: Keys
) -> None:
    incident = open_incident(workspace)
    sign_in(client, keys.operator)
    act(client, "rollback", to="previous-stable", reason="p95 regression")
    current = get_alias(workspace.conn, "production", "current")
    assert current is not None
    assert current.model_id == "claude-3-haiku"
    act(client, "failover", source="bedrock", target="google", reason="bedrock 5xx")
    weights = runtime_settings.get(workspace.conn, "production", "traffic")
    assert weights is not None
    kinds = [e["kind"] for e in incidents.timeline(workspace.conn, incident)]
    assert "rollback" in kinds
    assert "failover" in kinds
    actors = {e.action: e.actor for e in audit.entries(workspace.conn, limit=20)}
    assert actors["alias.rollback"] == "operator-key"
    assert actors["traffic.set"] == "operator-key"


def test_a_rollback_confirmed_after_current_moved_is_refused(
    workspace: Workspace, client: TestClient, keys: Keys
) -> None:
    sign_in(client, keys.operator)
    token = csrf_of(client.get("/").text)
    response = client.post(
        "/actions/rollback",
        data={
            "csrf": token,
            "confirmed": "1",
            "from_model": "gemini-1-5-flash",
            "to": "previous-stable",
            "reason": "stale page",
        },
    )
    assert "refused" in response.text
    current = get_alias(workspace.conn, "production", "current")
    assert current is not None
    assert current.model_id == "claude-3-5-haiku"


def test_silences_are_added_and_expired_from_the_dashboard(
    workspace: Workspace, client: TestClient, keys: Keys
) -> None:
    from quality_gates.alerts import silences

    sign_in(client, keys.operator)
    act(
        client, "silence", matchers="provider=bedrock alertname=~p95.*", duration="30m", comment="x"
    )
    (silence,) = silences.listing(workspace.conn)
    assert silence["created_by"] == "operator-key"
    act(client, "expire", silence=str(silence["id"]))
    assert silences.listing(workspace.conn) == []


def test_only_an_admin_may_revoke_keys(
    workspace: Workspace, client: TestClient, keys: Keys
) -> None:
    sign_in(client, keys.operator)
    assert "API keys" not in client.get("/").text
    token = csrf_of(client.get("/").text)
    refused = client.post(
        "/actions/revoke", data={"csrf": token, "key": "client-key", "confirmed": "1"}
    )
    assert refused.status_code == 403
    client.cookies.clear()
    sign_in(client, keys.admin)
    assert "API keys" in client.get("/").text
    act(client, "revoke", key="client-key")
    (entry,) = audit.entries(workspace.conn, action="key.revoke")
    assert entry.actor == "admin-key"


def test_a_failover_from_a_provider_without_traffic_is_refused_before_confirmation(
    workspace: Workspace, client: TestClient, keys: Keys
) -> None:
    from quality_gates.gateway.runtime import set_traffic

    set_traffic(
        workspace.conn,
        environment="production",
        weights={"bedrock": 50.0, "google": 50.0},  # meta left out: it keeps nothing
        current={},
        actor="alice",
    )
    before = runtime_settings.get(workspace.conn, "production", "traffic")
    sign_in(client, keys.operator)
    token = csrf_of(client.get("/").text)
    response = client.post(
        "/actions/failover",
        data={"csrf": token, "source": "meta", "target": "google", "reason": "x"},
    )
    assert "carries no traffic" in response.text
    assert 'id="confirm"' not in response.text
    assert runtime_settings.get(workspace.conn, "production", "traffic") == before
