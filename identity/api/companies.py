"""Companies, for signed-in people (a user token): profiles, members, invitations and the
partner model. Who may do what follows from the caller's relation to the company
(identity.services.companies.RIGHTS)."""

from http import HTTPStatus

from flask import current_app, request
from flask.views import MethodView
from marshmallow import RAISE

from identity.api.guards import Blueprint, accepts, principal, services
from identity.api.paging import next_link, next_link_header
from identity.api.parsing import read_body
from identity.api.pictures import (
    BINARY,
    ETAG,
    IMAGE_BODY,
    image_answer,
    image_get_doc,
    known_etags,
)
from identity.db import unit_of_work
from identity.images import JPEG
from identity.services.pictures import MAX_PICTURE_BYTES
from schemas.accounts import PictureSchema
from schemas.companies import (
    AcceptSchema,
    CompanyCreateSchema,
    CompanyFieldsSchema,
    CompanySchema,
    CustomerSchema,
    CustomersQuerySchema,
    InvitationSchema,
    InviteSchema,
    MemberSchema,
    PartnerSchema,
    RoleSchema,
)

blp = Blueprint(
    "companies",
    __name__,
    url_prefix="/v1",
    description="Company profiles, their members and invitations, and their partners.",
)

_ID = "3b0c5d1e-7f2a-4b8c-9d6e-1a2b3c4d5e6f"
_PARTNER = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"
_FIELDS = {
    "name": "Acme B.V.",
    "street": "Herengracht",
    "house_number": "101-A",
    "postal_code": "1015 BE",
    "city": "Amsterdam",
    "province": "Noord-Holland",
    "country": "NL",
    "attention_of": "Accounts payable",
    "email": "info@acme.example",
    "phone": "+31201234567",
    "vat_number": "NL004495445B01",
    "bank_account": "NL91ABNA0417164300",
}
_COMPANY = {
    "id": _ID,
    **_FIELDS,
    "is_partner": False,
    "partner_id": _PARTNER,
    "field_sources": {
        "name": {
            "source": "person",
            "by": "7d5c3f0e-2b1a-4c8e-9f6d-0a1b2c3d4e5f",
            "site": "copernica.com",
            "at": "2026-12-08T09:30:00Z",
        }
    },
    "created_at": "2026-12-08T09:30:00Z",
    "updated_at": "2026-12-08T09:30:00Z",
    "your_role": "admin",
}
_MEMBER = {
    "user_id": "7d5c3f0e-2b1a-4c8e-9f6d-0a1b2c3d4e5f",
    "email": "anna@acme.example",
    "first_name": "Anna",
    "infix": None,
    "last_name": "Jansen",
    "phone": "+31201234567",
    "mobile": None,
    "role": "admin",
    "joined_at": "2026-12-08T09:30:00Z",
}
_INVITATION = {
    "id": "5c4b3a29-1807-4f6e-8d5c-4b3a29180706",
    "email": "bob@acme.example",
    "role": "member",
    "created_at": "2026-12-08T09:30:00Z",
    "expires_at": "2026-12-22T09:30:00Z",
}
_NOT_YOURS = "No such company, or none the caller has anything to do with."


@blp.route("/companies")
class Companies(MethodView):
    @blp.user_token()
    @blp.arguments(CompanyCreateSchema, example=_FIELDS)
    @blp.response(HTTPStatus.CREATED, CompanySchema, example=_COMPANY | {"partner_id": None})
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    @blp.alt_response(HTTPStatus.FORBIDDEN, response="FORBIDDEN")
    def post(self, body):
        """Make a company

        The signed-in person becomes its first admin. Every field of the profile; only
        `name` is needed. Checked: `country` is an ISO 3166-1 alpha-2 code, `phone` a
        valid number (E.164, or national in the company's country), `email` an address,
        `vat_number` a valid VAT number for its country and `bank_account` a valid IBAN
        (both kept compact); each fault is named in a `422`. Each field records who set
        it, through which site and when (`field_sources`). `internal_description` is for
        staff only (`403` from anyone else).
        """
        return services().companies.create(unit_of_work(), principal(), body)


@blp.route("/companies/<uuid:company_id>")
class Company(MethodView):
    @blp.user_token()
    @blp.response(HTTPStatus.OK, CompanySchema, example=_COMPANY)
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND", description=_NOT_YOURS)
    def get(self, company_id):
        """A company

        For its admins and members, and for the people of the partner company it chose
        (`your_role` says which). To anyone else it does not exist (`404`).
        """
        return services().companies.read(unit_of_work(), principal(), company_id)

    @blp.user_token()
    @blp.arguments(CompanyFieldsSchema, example={"phone": "+31207654321", "attention_of": None})
    @blp.response(HTTPStatus.OK, CompanySchema, example=_COMPANY)
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    @blp.alt_response(HTTPStatus.FORBIDDEN, response="FORBIDDEN")
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND", description=_NOT_YOURS)
    def patch(self, body, company_id):
        """Change a company

        Admins only (members and the partner's people: `403`). The fields given are set,
        `null` clears one (but `name`); checked as at `POST /v1/companies`.
        """
        return services().companies.edit(unit_of_work(), principal(), company_id, body)


@blp.route("/companies/<uuid:company_id>/members")
class Members(MethodView):
    @blp.user_token()
    @blp.response(HTTPStatus.OK, MemberSchema(many=True), example=[_MEMBER])
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND", description=_NOT_YOURS)
    def get(self, company_id):
        """A company's people

        Their contact data (address, name, phone numbers) and role, admins first; for the
        company's own people and its partner's. Nothing else of them: no newsletter
        flags, no sign-ins.
        """
        return services().companies.members(unit_of_work(), principal(), company_id)


@blp.route("/companies/<uuid:company_id>/members/<uuid:user_id>")
class Member(MethodView):
    @blp.user_token()
    @blp.arguments(RoleSchema, example={"role": "admin"})
    @blp.response(HTTPStatus.OK, MemberSchema, example=_MEMBER)
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    @blp.alt_response(HTTPStatus.FORBIDDEN, response="FORBIDDEN")
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND")
    @blp.alt_response(HTTPStatus.CONFLICT, response="CONFLICT")
    def patch(self, body, company_id, user_id):
        """Change a member's role

        Admins only. The company's last admin cannot become a member (`409`): make
        another admin first.
        """
        companies = services().companies
        return companies.change_role(unit_of_work(), principal(), company_id, user_id, body["role"])

    @blp.user_token()
    @blp.response(HTTPStatus.NO_CONTENT, description="The person no longer belongs to it.")
    @blp.alt_response(HTTPStatus.FORBIDDEN, response="FORBIDDEN")
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND")
    @blp.alt_response(HTTPStatus.CONFLICT, response="CONFLICT")
    def delete(self, company_id, user_id):
        """Remove a member, or leave

        An admin removes anyone; a member removes themselves (leaves). The last admin
        cannot go (`409`). The person keeps their own record.
        """
        services().companies.remove(unit_of_work(), principal(), company_id, user_id)


@blp.route("/companies/<uuid:company_id>/invitations")
class Invitations(MethodView):
    @blp.user_token()
    @blp.arguments(InviteSchema, example={"email": "bob@acme.example", "role": "member"})
    @blp.response(HTTPStatus.CREATED, InvitationSchema, example=_INVITATION)
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    @blp.alt_response(HTTPStatus.FORBIDDEN, response="FORBIDDEN")
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND", description=_NOT_YOURS)
    @blp.alt_response(HTTPStatus.CONFLICT, response="CONFLICT")
    @blp.alt_response(HTTPStatus.TOO_MANY_REQUESTS, response="TOO_MANY_REQUESTS")
    def post(self, body, company_id):
        """Invite someone

        Admins only. A new address gets a minimal profile (source `invitation`); the
        address gets a mail in the site's brand with a link on its pages
        (`{pages}/invitations/accept?token=…`, 14 days), whose page lets the person sign
        in or register with that address and calls `POST /v1/me/invitations/accept`.
        Inviting an address again mails a new link and the old one stops working: one
        open invitation per address, one record. Someone who belongs already is a `409`;
        more than five invitations to one address in an hour, a `429`.
        """
        companies = services().companies
        return companies.invite(
            unit_of_work(), principal(), company_id, body["email"], body["role"]
        )

    @blp.user_token()
    @blp.response(HTTPStatus.OK, InvitationSchema(many=True), example=[_INVITATION])
    @blp.alt_response(HTTPStatus.FORBIDDEN, response="FORBIDDEN")
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND", description=_NOT_YOURS)
    def get(self, company_id):
        """The open invitations

        Admins only: the invitations neither accepted, withdrawn nor expired.
        """
        return services().companies.invitations(unit_of_work(), principal(), company_id)


@blp.route("/companies/<uuid:company_id>/invitations/<uuid:invitation_id>")
class Invitation(MethodView):
    @blp.user_token()
    @blp.response(HTTPStatus.NO_CONTENT, description="The link no longer works.")
    @blp.alt_response(HTTPStatus.FORBIDDEN, response="FORBIDDEN")
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND")
    def delete(self, company_id, invitation_id):
        """Withdraw an invitation

        Admins only; its link stops working at once.
        """
        services().companies.withdraw(unit_of_work(), principal(), company_id, invitation_id)


@blp.route("/me/invitations/accept")
class Accept(MethodView):
    @blp.user_token(impersonated=False)
    @blp.arguments(AcceptSchema, example={"token": "Zk3v9S0m3T0k3nFr0mTh3L1nk"})
    @blp.response(HTTPStatus.OK, CompanySchema, example=_COMPANY | {"your_role": "member"})
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    @blp.alt_response(HTTPStatus.FORBIDDEN, response="FORBIDDEN")
    def post(self, body):
        """Accept an invitation

        With the `token` of the invitation mail's link, signed in through the site whose
        mail it was: the person belongs to the company from now on, in the role they
        were invited to (one who belongs already keeps theirs). Only the account of the
        invited address may accept (`403` for another, and the link stays good); a
        used, withdrawn, replaced or expired link is a `422`.
        """
        return services().companies.accept(unit_of_work(), principal(), body["token"])


@blp.route("/companies/<uuid:company_id>/partner")
class Partner(MethodView):
    @blp.user_token()
    @blp.arguments(PartnerSchema, example={"partner_id": _PARTNER})
    @blp.response(HTTPStatus.OK, CompanySchema, example=_COMPANY)
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    @blp.alt_response(HTTPStatus.FORBIDDEN, response="FORBIDDEN")
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND", description=_NOT_YOURS)
    def put(self, body, company_id):
        """Choose a partner

        The customer company's admins choose a company that is a partner (flagged with
        `identity companies partner ID`; any other id is a `422`). The partner's people
        then read this company's data and its people's contact data
        (`GET /v1/companies/{id}`, `…/members`, and their own `…/customers`), and
        nothing else: no changes, no newsletter flags, no sign-ins.
        """
        companies = services().companies
        return companies.choose_partner(unit_of_work(), principal(), company_id, body["partner_id"])

    @blp.user_token()
    @blp.response(HTTPStatus.NO_CONTENT, description="The company has no partner now.")
    @blp.alt_response(HTTPStatus.FORBIDDEN, response="FORBIDDEN")
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND", description=_NOT_YOURS)
    def delete(self, company_id):
        """Drop the partner

        Admins only. The partner's people are refused from their next request on.
        """
        services().companies.drop_partner(unit_of_work(), principal(), company_id)


@blp.route("/companies/<uuid:company_id>/customers")
class Customers(MethodView):
    @blp.user_token()
    @blp.arguments(CustomersQuerySchema, location="query", unknown=RAISE)
    @blp.response(
        HTTPStatus.OK,
        CustomerSchema(many=True),
        example=[_COMPANY | {"your_role": "partner", "members": [_MEMBER]}],
        headers={"Link": next_link_header(f"…?limit=50&after={_ID}")},
    )
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND", description=_NOT_YOURS)
    def get(self, query, company_id):
        """A partner's customers

        For the people of a partner company: the companies that chose it, each with its
        data and its people's contact data, a page at a time in id order (`limit`, 50
        unless said); while more remain, the `Link` header names the next page.
        """
        limit = query["limit"]
        page = services().companies.customers(
            unit_of_work(), principal(), company_id, query["after"], limit + 1
        )
        last = page[limit - 1]["id"] if len(page) > limit else None
        return page[:limit], next_link(last, limit, company_id=company_id)


@blp.route("/companies/<uuid:company_id>/logo")
class Logo(MethodView):
    @blp.user_token()
    @blp.doc(**image_get_doc("logo"))
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND")
    def get(self, company_id):
        """A company's logo

        For whoever may read the company (its people, its partner's). The image itself,
        as `GET /v1/me/picture` gives a picture: its `ETag`, `Cache-Control: private`,
        and `304` for `If-None-Match` while it is unchanged. `404` when it has none.
        """
        found = services().logos.logo(unit_of_work(), principal(), company_id, known_etags())
        return image_answer(found)

    @blp.user_token()
    @blp.doc(**IMAGE_BODY)
    @blp.response(
        HTTPStatus.OK,
        PictureSchema,
        description="The logo as it is kept now.",
        example={
            "content_type": JPEG,
            "width": 512,
            "height": 256,
            "etag": ETAG,
            "url": f"https://identity.example.com/v1/companies/{_ID}/logo",
        },
    )
    @blp.body_problems
    @blp.alt_response(HTTPStatus.UNPROCESSABLE_ENTITY, response="UNPROCESSABLE_ENTITY")
    @blp.alt_response(HTTPStatus.FORBIDDEN, response="FORBIDDEN")
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND", description=_NOT_YOURS)
    @accepts(*BINARY)
    def put(self, company_id):
        """Put up a company's logo

        Admins only. Checked and re-encoded as the person's picture is (`PUT
        /v1/me/picture`): PNG, JPEG or WebP by its bytes, at most 2 MiB (`413`), 4096
        pixels a side and 12 megapixels, made anew from its pixels with no metadata, at
        most 1024 pixels on its longer side.
        """
        data = read_body(request, MAX_PICTURE_BYTES)
        logo = services().logos.put(unit_of_work(), principal(), company_id, data)
        public = current_app.config["IDENTITY"]["PUBLIC_URL"].rstrip("/")
        return logo | {"url": f"{public}/v1/companies/{company_id}/logo"}

    @blp.user_token()
    @blp.response(HTTPStatus.NO_CONTENT, description="The logo is gone.")
    @blp.alt_response(HTTPStatus.FORBIDDEN, response="FORBIDDEN")
    @blp.alt_response(HTTPStatus.NOT_FOUND, response="NOT_FOUND")
    def delete(self, company_id):
        """Take a company's logo down

        Admins only; `404` when it has none.
        """
        services().logos.remove(unit_of_work(), principal(), company_id)
