"""Images are fetched once, when a campaign or step is saved, through the guarded fetcher, and
queued messages carry the stored copy. Fetches go only to a local server on 127.0.0.1."""
import io

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.local_http import local_http
from tests.test_campaigns import expand_all
from tests.test_media import png
from tests.webutil import signed_in_user
from web import media as web_media


def _image(h):
    body = png(size=(60, 40), mode="RGB")
    h.send_response(200)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


@pytest.fixture(scope="module")
def images():
    with local_http({"/a.png": _image, "/promo.png": _image, "/step.png": _image}) as srv:
        yield srv


@pytest.fixture
def local_fetches(monkeypatch):
    """Lets the app fetch from 127.0.0.1 (and nothing else) for one test."""
    monkeypatch.setattr(web_media, "ADDRESS_POLICY", "127.0.0.1".__eq__)


@pytest.fixture
def me(client, committed_db_url):
    uid, token = signed_in_user(client, committed_db_url)
    with psycopg.connect(committed_db_url, autocommit=True) as c:
        c.execute("SELECT create_device(%s, 'phone')", [uid])
        c.execute("UPDATE user_devices SET status = 'online', phone = '60110000001' WHERE user_id = %s", [uid])
        c.execute("INSERT INTO leads (user_id, device_id, phone) SELECT %s, id, '60123456789' FROM user_devices"
                  " WHERE user_id = %s", [uid, uid])
    return {"uid": uid, "h": {"X-CSRFToken": token}}


def new_campaign(client, me, **fields):
    body = {"title": "t", "message": "hello", "campaign_date": "2020-01-01", "time_schedule": "09:00", **fields}
    return client.post("/api/campaigns", json=body, headers=me["h"])


def test_a_private_image_url_is_refused_at_save_and_never_requested(client, me, images):
    before = len(images.paths)
    for url in (f"http://127.0.0.1:{images.server_port}/a.png", f"http://localhost:{images.server_port}/a.png",
                "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/a.png"):
        r = new_campaign(client, me, image_url=url)
        assert r.status_code == 400 and "not a public internet address" in r.get_json()["error"], url
    r = new_campaign(client, me, image_url="https://example.com/" + "a" * 3000)
    assert r.status_code == 400 and "longer than 2048" in r.get_json()["error"]
    assert len(images.paths) == before


def test_an_image_url_is_fetched_once_and_queued_as_the_stored_copy(client, me, images, local_fetches,
                                                                    committed_db_url):
    url = f"http://127.0.0.1:{images.server_port}/promo.png?v=1"
    first = new_campaign(client, me, image_url=url)
    assert first.status_code == 201, first.get_json()
    again = new_campaign(client, me, image_url=url)
    assert images.paths.count("/promo.png?v=1") == 1              # saved twice, fetched once
    media_id = first.get_json()["campaign"]["media_id"]
    assert again.get_json()["campaign"]["media_id"] == media_id
    with psycopg.connect(committed_db_url, autocommit=True, row_factory=dict_row) as c:
        expand_all(c, first.get_json()["campaign"]["id"])
        (row,) = c.execute("SELECT message_type, media_url FROM broadcast_messages WHERE campaign_id = %s",
                           [first.get_json()["campaign"]["id"]]).fetchall()
    assert row == {"message_type": "image", "media_url": f"/media/{media_id}"}
    served = client.get(row["media_url"])
    assert served.mimetype == "image/jpeg" and served.data[:2] == b"\xff\xd8"


def test_a_step_image_url_is_stored_when_the_sequence_is_saved(client, me, images, local_fetches):
    r = client.post("/api/sequences", headers=me["h"], json={
        "name": "drip", "trigger": "drip", "steps": [
            {"day_number": 1, "content": "hi", "media_url": f"http://127.0.0.1:{images.server_port}/step.png"},
            {"day_number": 2, "content": "no image"}]})
    assert r.status_code == 201, r.get_json()
    steps = r.get_json()["steps"]
    assert steps[0]["media_id"] is not None and steps[1]["media_id"] is None
    r = client.post("/api/sequences", headers=me["h"], json={
        "name": "bad", "trigger": "bad", "steps": [{"day_number": 1, "content": "hi", "media_url": "http://10.1.1.1/"}]})
    assert r.status_code == 400 and r.get_json()["error"].startswith("step 1 media_url: ")


def test_upload_then_use_by_id_and_nobody_elses(app, client, me, committed_db_url):
    r = client.post("/api/media", headers=me["h"], content_type="multipart/form-data",
                    data={"image": (io.BytesIO(png()), "x.png")})
    assert r.status_code == 201 and r.get_json()["url"] == f"/media/{r.get_json()['id']}"
    media_id = r.get_json()["id"]
    assert new_campaign(client, me, media_id=media_id).status_code == 201
    stranger = app.test_client()
    _, token = signed_in_user(stranger, committed_db_url)
    r = new_campaign(stranger, {"h": {"X-CSRFToken": token}}, media_id=media_id)
    assert r.status_code == 400 and "not one of your images" in r.get_json()["error"]
    assert stranger.get(f"/media/{media_id}").status_code == 404
    assert client.post("/api/media", headers=me["h"], data=b"not an image",
                       content_type="application/octet-stream").status_code == 400


def test_a_data_url_is_stored_once_normalised_and_every_queued_message_refers_to_it(client, me, committed_db_url):
    import base64
    big = png(size=(1400, 1000), mode="RGB", noise=True)               # noise: far over 350 KB as a PNG
    assert len(big) > 350 * 1024
    data_url = "data:image/png;base64," + base64.b64encode(big).decode()
    with psycopg.connect(committed_db_url, autocommit=True, row_factory=dict_row) as c:
        c.execute("INSERT INTO leads (user_id, device_id, phone) SELECT %s, id, '60123456780' FROM user_devices"
                  " WHERE user_id = %s", [me["uid"], me["uid"]])
        before = c.execute("SELECT count(*) AS n FROM media WHERE user_id = %s", [me["uid"]]).fetchone()["n"]
    r = new_campaign(client, me, image_url=data_url)
    assert r.status_code == 201, r.get_json()
    campaign = r.get_json()["campaign"]
    assert campaign["image_url"] is None and campaign["media_id"] is not None   # the data URL is not copied
    step = client.post("/api/sequences", headers=me["h"], json={
        "name": "pasted", "trigger": "pasted", "steps": [{"day_number": 1, "content": "hi", "media_url": data_url}]})
    assert step.status_code == 201 and step.get_json()["steps"][0]["media_url"] is None
    assert step.get_json()["steps"][0]["media_id"] == campaign["media_id"]      # one image, stored once
    with psycopg.connect(committed_db_url, autocommit=True, row_factory=dict_row) as c:
        expand_all(c, campaign["id"])
        rows = c.execute("SELECT media_url FROM broadcast_messages WHERE campaign_id = %s", [campaign["id"]]).fetchall()
        stored = c.execute("SELECT count(*) AS n, max(length(jpeg)) AS size FROM media WHERE user_id = %s",
                           [me["uid"]]).fetchone()
    assert len(rows) == 2 and {r["media_url"] for r in rows} == {f"/media/{campaign['media_id']}"}
    assert stored["n"] == before + 1 and stored["size"] <= 350 * 1024
    bad = new_campaign(client, me, image_url="data:image/png;base64,@@@")
    assert bad.status_code == 400 and "not valid base64" in bad.get_json()["error"]
