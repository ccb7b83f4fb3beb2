"""The OpenAPI document as the code describes it, for `identity openapi write`."""

import json

from identity.db import NoDatabase


def openapi_document() -> str:
    """The document /openapi.json serves, as stable, diffable text."""
    from identity import create_app

    app = create_app(database=NoDatabase())
    spec = app.extensions["flask-smorest"]["apis"][""]["ext_obj"].spec.to_dict()
    return json.dumps(spec, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
