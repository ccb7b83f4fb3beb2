import uuid

from tests.api.problems import assert_problem


def make(site, email="Anna@Example.com", **fields):
    response = site.post("/v1/profiles", json={"email": email, "source": "event", **fields})
    assert response.status_code == 201
    return response.get_json()


def test_a_record_is_found_by_its_address_in_any_case(site):
    record = make(site, first_name="Anna")
    for spelling in ("Anna@Example.com", "anna@example.com", "ANNA@EXAMPLE.COM"):
        response = site.get("/v1/users", query_string={"email": spelling})
        assert response.status_code == 200
        found = response.get_json()
        assert found["id"] == record["id"] and found["first_name"] == "Anna"
        assert "filled" not in found


def test_an_idn_address_is_found_by_either_spelling(site):
    record = make(site, email="jan@bücher.example")
    response = site.get("/v1/users", query_string={"email": "jan@xn--bcher-kva.example"})
    assert response.get_json()["id"] == record["id"]


def test_a_record_is_found_by_its_id(site):
    record = make(site, last_name="Berg")
    found = site.get(f"/v1/users/{record['id']}").get_json()
    assert found["last_name"] == "Berg"
    assert found["email"] == "Anna@example.com"


def test_an_unknown_address_or_id_is_a_404_problem(site):
    make(site)
    assert_problem(site.get("/v1/users", query_string={"email": "bob@example.com"}), 404)
    assert_problem(site.get(f"/v1/users/{uuid.uuid4()}"), 404)
    assert_problem(site.get("/v1/users/1"), 404)


def test_a_malformed_look_up_is_a_422_problem(site):
    assert_problem(site.get("/v1/users", query_string={"email": "not an address"}), 422, "email")
    assert_problem(site.get("/v1/users"), 422, "email")
    assert_problem(
        site.get("/v1/users", query_string={"email": "a@example.com", "mail": "x"}), 422, "mail"
    )


def test_ids_are_random_not_a_sequence(site):
    ids = [uuid.UUID(make(site, email=f"p{n}@example.com")["id"]) for n in range(5)]
    assert all(i.version == 4 for i in ids)
    assert len({i.int >> 64 for i in ids}) == 5
