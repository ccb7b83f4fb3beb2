"""The domain's exceptions; `identity.api.problems` turns each into one kind of response."""


class IdentityError(Exception):
    """Base of every error the service raises on purpose."""

    def __init__(self, detail: str, *, errors: dict[str, list[str]] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors


class ConfigurationError(IdentityError):
    """A setting is missing or malformed; the service refuses to start."""


class InvalidInput(IdentityError):
    """The request is well-formed but one or more fields are not acceptable."""


class NotFound(IdentityError):
    """The thing asked for does not exist, or the caller may not know that it does."""


class Conflict(IdentityError):
    """The change clashes with what is stored (a unique value already taken)."""


class Unauthenticated(IdentityError):
    """No valid credentials came with the request."""


class Forbidden(IdentityError):
    """The credentials are valid but do not allow this."""


class TooManyRequests(IdentityError):
    """The caller must wait `retry_after` seconds before trying this again."""

    def __init__(self, detail: str, *, retry_after: int):
        super().__init__(detail)
        self.retry_after = retry_after


class DatabaseUnavailable(IdentityError):
    """PostgreSQL cannot be reached right now; the caller may retry."""


class ProviderUnavailable(IdentityError):
    """A social sign-in's provider cannot be reached, is too slow, or answers garbage."""


class EmptyImport(IdentityError):
    """An import whose body holds not one byte."""


class TooManyImportLines(IdentityError):
    """An import has more lines than one import takes."""


class TooManyExports(IdentityError):
    """This process streams as many exports as it may; the caller may retry shortly."""


class ServiceStopping(IdentityError):
    """This process is stopping: long work ended at a safe point; the caller may retry."""


class ImportStopped(Exception):
    """An import stopped part-way for `cause`; its first lines, through `lines_done`, are
    done (written or rejected) and stay so."""

    def __init__(self, cause: Exception, lines_done: int):
        super().__init__(type(cause).__name__)
        self.cause = cause
        self.lines_done = lines_done
