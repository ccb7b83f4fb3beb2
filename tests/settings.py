"""The settings the tests' apps run with."""

# The settings of the tests' apps, unless a test is marked `timing`: argon2 at next to
# no cost and no least time for a password-reset answer, as Kratos's and
# Flask-Security's test configurations do. The tests about hashing and timing keep the
# service's own settings (tests/security/test_passwords.py builds its hasher from them).
CHEAP = {
    "CHEAP_PASSWORD_HASHING": True,
    "PASSWORD_TIME_COST": 1,
    "PASSWORD_MEMORY_KIB": 8,
    "PASSWORD_PARALLELISM": 1,
    "PASSWORD_RESET_ANSWER_SECONDS": 0.0,
}


def settings_for(request) -> dict:
    """CHEAP, or nothing for a test marked `timing`."""
    return {} if request.node.get_closest_marker("timing") else CHEAP
