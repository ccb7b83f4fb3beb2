"""The person's rights over their data (GDPR Art. 15 to 17): what is stored about them, as
one document. Erasure, and staff's handling of a person's request, come with the rest of
the staff issue."""

from identity.errors import NotFound
from identity.services.principal import Principal
from identity.store import export as store
from identity.store.transactions import UnitOfWork


def export_own(uow: UnitOfWork, principal: Principal) -> str:
    """Everything stored about the signed-in person, as JSON text (identity.store.export):
    their record and where each value came from, companies and roles, invitations,
    newsletter flags and every consent event, notification settings, social identities,
    login attempts, sign-ins, second steps, the second factor and recovery codes (that
    they exist, not their secrets), mailed links, their picture and any staff role."""
    document = store.document(uow.one_statement, principal.user.user_id)
    if document is None:
        raise NotFound("no such record")
    return document
