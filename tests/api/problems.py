"""What every error answer must look like."""

PROBLEM_JSON = "application/problem+json"


def assert_problem(response, status: int, *error_fields: str) -> dict:
    """The response is an RFC 9457 problem with this status (and these bad fields)."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM_JSON
    body = response.get_json(force=True)
    assert body["status"] == status
    assert body["type"] and body["title"] and body["detail"]
    assert "Traceback" not in response.get_data(as_text=True)
    if error_fields:
        assert sorted(body["errors"]) == sorted(error_fields), body
    return body
