"""Rights lookup: "who owns this image?" for an uploaded image or an image URL."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from flask.typing import ResponseReturnValue

from admin.web.auth import login_required
from admin.web.lookup import LookupFailed, fetch_image, lookup_image
from admin.web.resources import settings
from admin.web.scope import current_scope

bp = Blueprint("lookup", __name__)


@bp.route("/lookup", methods=["GET", "POST"])
@login_required
def index() -> ResponseReturnValue:
    if request.method == "GET":
        return render_template("lookup.html", hits=None, url="")
    upload = request.files.get("image")
    url = request.form.get("url", "").strip()[:2000]
    try:
        if upload is not None and upload.filename:
            data = upload.read(settings().max_image_bytes + 1)
            source = upload.filename
        elif url:
            data, source = fetch_image(url), url
        else:
            raise LookupFailed("Choose an image file or give the URL of an image.")
        hits = lookup_image(data, source, current_scope())
    except LookupFailed as exc:
        return render_template("lookup.html", hits=None, url=url, error=str(exc)), 400
    return render_template("lookup.html", hits=hits, url=url, source=source)
