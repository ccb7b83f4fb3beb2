import pytest

from identity.errors import InvalidInput
from identity.services.contact import email_key, normalise_email, normalise_phone


def test_an_address_keeps_its_local_part_and_gets_a_lower_case_domain():
    assert normalise_email("Anna.Berg@Example.COM") == "Anna.Berg@example.com"


def test_two_spellings_of_one_address_share_a_key():
    assert email_key(normalise_email("ANNA@example.com")) == email_key(
        normalise_email("anna@EXAMPLE.com")
    )


def test_an_idn_domain_is_kept_in_unicode_whether_given_in_unicode_or_punycode():
    assert normalise_email("jan@bücher.example") == "jan@bücher.example"
    assert normalise_email("jan@xn--bcher-kva.example") == "jan@bücher.example"


@pytest.mark.parametrize(
    "address", ["anna", "anna@", "@example.com", "anna@@example.com", "a b@c.nl"]
)
def test_a_malformed_address_is_refused_with_a_reason(address):
    with pytest.raises(InvalidInput) as caught:
        normalise_email(address)
    assert caught.value.errors["email"][0]


def test_a_national_number_is_read_with_a_country_hint():
    assert normalise_phone("020 123 4567", "phone", "NL") == "+31201234567"


def test_an_international_number_needs_no_hint():
    assert normalise_phone("+44 20 7946 0958", "mobile") == "+442079460958"


def test_a_national_number_without_a_hint_says_what_to_send():
    with pytest.raises(InvalidInput) as caught:
        normalise_phone("020 123 4567", "fax")
    assert "country" in caught.value.errors["fax"][0]


@pytest.mark.parametrize("number", ["+31 12", "call me", "+999 123456789"])
def test_an_impossible_number_is_refused(number):
    with pytest.raises(InvalidInput) as caught:
        normalise_phone(number, "phone")
    assert caught.value.errors["phone"]
