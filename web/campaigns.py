"""Campaigns: list, create, edit, cancel, pause, resume, retry failed, and the report (per campaign
and per device, with the leads behind each number). Fan-out and status live in SQL
(db/functions/campaigns.sql); this module passes the owner's id with every call."""
from flask import Blueprint, abort, g, jsonify, render_template, request

from web.auth import login_required
from web.body import json_body
from web.db import all_rows, one
from web.leads import my_devices
from web.media import fetch_deadline, media_id_for, source_url
from web.schema import (INTEGER, Body, Bool, Int, IntList, Text, accepts, describes, obj, optional_int,
                        returns, row, rows, setting_default, text, with_fields)

bp = Blueprint("campaigns", __name__)

BUCKETS = ("should_send", "sent", "failed", "skipped", "pending", "delivered", "read")


def campaign_or_404(campaign_id):
    row = one("SELECT * FROM get_campaign(%s, %s)", [g.user["id"], campaign_id])
    if row is None:
        abort(404, description="no such campaign")
    return row


REPORT = obj(campaign=row("get_campaign"), report=row("campaign_report"), devices=rows("campaign_device_report"))


def report(campaign_id):
    return {
        "campaign": campaign_or_404(campaign_id),
        "report": one("SELECT * FROM campaign_report WHERE user_id = %s AND campaign_id = %s",
                      [g.user["id"], campaign_id]),
        "devices": all_rows("SELECT * FROM campaign_device_report WHERE user_id = %s AND campaign_id = %s"
                            " ORDER BY device_name NULLS LAST, device_id", [g.user["id"], campaign_id]),
    }


# The editable fields, in the SQL functions' order after the kind. The image is image_url, fetched
# and stored now (once: the same URL again reuses the copy) or decoded (a data URL), or an
# uploaded media_id.
CAMPAIGN = Body(title=Text(default=""), niche=Text(default=""),
                target_status=Text(default="all", description="prospect, customer or all"),
                message=Text(default=""),
                image_url=Text(fmt="uri", description="public http(s) image, or a data: URL (base64)"),
                device_ids=IntList(description="your devices to send from; none: each lead's own"),
                ai_limit_per_device=Int(description="an AI campaign: leads per device"),
                campaign_date=Text(fmt="date", description="in your zone"), time_schedule=Text(fmt="time"),
                min_delay_seconds=setting_default("min_delay_seconds"),
                max_delay_seconds=setting_default("max_delay_seconds"),
                media_id=Int(description="an image from POST /api/media"),
                failover=Bool(description="when a message's device is banned, logged out or offline too long, "
                                          "send it from another of your devices with room (default false)"))
NEW_CAMPAIGN = CAMPAIGN.extended(kind=Text(default="broadcast", enum=["broadcast", "ai"]))


def campaign_fields(body):
    """CAMPAIGN's values in the SQL functions' order; an image URL is fetched and stored now."""
    image_url = (body["image_url"] or "").strip() or None
    return [body["title"], body["niche"], body["target_status"] or "all", body["message"], source_url(image_url),
            body["device_ids"], body["ai_limit_per_device"], body["campaign_date"] or None,
            body["time_schedule"] or None, body["min_delay_seconds"], body["max_delay_seconds"],
            media_id_for(image_url, fetch_deadline(), "image_url") if image_url else body["media_id"],
            bool(body["failover"])]


# Pages ---------------------------------------------------------------------------------------

@bp.route("/campaigns")
@login_required
def page():
    campaigns = all_rows("SELECT * FROM campaign_report WHERE user_id = %s ORDER BY scheduled_at DESC, campaign_id DESC"
                         " LIMIT 200", [g.user["id"]])
    return render_template("campaigns/index.html", campaigns=campaigns)


@bp.route("/campaigns/<int:campaign_id>")
@login_required
def detail(campaign_id):
    return render_template("campaigns/detail.html", buckets=BUCKETS, own_devices=my_devices(), **report(campaign_id))


# JSON API ------------------------------------------------------------------------------------

@bp.route("/api/campaigns")
@login_required
@returns(obj(campaigns=rows("campaign_report")))
def api_list():
    """Your campaigns with their progress (should send, sent, failed, skipped, pending)."""
    return jsonify(campaigns=all_rows("SELECT * FROM campaign_report WHERE user_id = %s"
                                      " ORDER BY scheduled_at DESC, campaign_id DESC LIMIT 200", [g.user["id"]]))


@bp.route("/api/campaigns", methods=["POST"])
@login_required
@accepts(NEW_CAMPAIGN)
@returns(REPORT, status=201, description="Created")
def api_create(body):
    """Creates a campaign: kind broadcast or ai, audience (niche, target_status), optional device_ids, message, an image (image_url: a public http(s) URL fetched once, now; or media_id from POST /api/media), date and time in your zone, min/max delay."""
    # Typed placeholders: a number past an integer column's range is a 400 (22003), never "no such function".
    campaign_id = one("SELECT create_campaign(%s, %s, %s, %s, %s, %s, %s, %s, %s::integer, %s::date, %s::time, "
                      "%s::integer, %s::integer, %s, %s) AS id",
                      [g.user["id"], body["kind"] or "broadcast", *campaign_fields(body)])["id"]
    return jsonify(report(campaign_id)), 201


@bp.route("/api/campaigns/<int:campaign_id>")
@login_required
@returns(REPORT)
def api_get(campaign_id):
    """One campaign with its report per device (should send, sent, failed, skipped, pending, delivered, read)."""
    return jsonify(report(campaign_id))


@bp.route("/api/campaigns/<int:campaign_id>", methods=["PUT"])
@login_required
@describes(CAMPAIGN)
@returns(REPORT)
def api_update(campaign_id):
    """Edits a campaign that has not started yet."""
    campaign_or_404(campaign_id)
    body = CAMPAIGN.parse(json_body())
    one("SELECT update_campaign(%s, %s, %s, %s, %s, %s, %s, %s, %s::integer, %s::date, %s::time, %s::integer, "
        "%s::integer, %s, %s)",
        [g.user["id"], campaign_id, *campaign_fields(body)])
    return jsonify(report(campaign_id))


ACTIONS = {
    "cancel": "SELECT cancel_campaign(%s, %s) AS r",
    "pause": "SELECT pause_campaign(%s, %s, true) AS r",
    "resume": "SELECT pause_campaign(%s, %s, false) AS r",
}


@bp.route("/api/campaigns/<int:campaign_id>/<any(cancel, pause, resume):action>", methods=["POST"])
@login_required
@returns(REPORT)
def api_action(campaign_id, action):
    """Cancels, pauses or resumes a campaign."""
    if one(ACTIONS[action], [g.user["id"], campaign_id])["r"] is None:
        abort(404, description="no such campaign")
    return jsonify(report(campaign_id))


@bp.route("/api/campaigns/<int:campaign_id>/retry", methods=["POST"])
@login_required
@accepts(Body(device_id=Int(description="send the retries from this device instead")))
@returns(with_fields(REPORT, queued=INTEGER))
def api_retry(campaign_id, body):
    """Queues new messages for the failed ones (optionally on another device); history stays."""
    queued = one("SELECT retry_failed_messages(%s, %s, %s) AS n",
                 [g.user["id"], campaign_id, body["device_id"]])["n"]
    if queued is None:
        abort(404, description="no such campaign")
    return jsonify(queued=queued, **report(campaign_id))


@bp.route("/api/campaigns/<int:campaign_id>/leads")
@login_required
@returns(obj(leads=rows("campaign_report_leads")))
def api_report_leads(campaign_id):
    """The leads behind one report number: status (sent, failed, ...) and optionally device_id."""
    campaign_or_404(campaign_id)
    rows = all_rows("SELECT * FROM campaign_report_leads(%s, %s, %s, %s, %s, %s)",
                    [g.user["id"], campaign_id, optional_int(request.args.get("device_id"), "device_id"),
                     text(request.args, "bucket", "should_send"),
                     optional_int(request.args.get("limit"), "limit") or 100,
                     optional_int(request.args.get("offset"), "offset") or 0])
    return jsonify(leads=rows)
