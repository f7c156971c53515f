"""`flask integrations set-secret / list`: per-tenant secrets for signed webhooks."""
import pytest

from activityweb.extensions import db
from activityweb.models import IntegrationSecret


@pytest.fixture
def tenants(runner):
    for slug in ("acme", "globex"):
        assert runner.invoke(args=["tenants", "create", slug]).exit_code == 0


def set_secret(runner, *args):
    return runner.invoke(args=["integrations", "set-secret", *args])


def test_a_secret_is_made_printed_and_stored(app, runner, tenants):
    result = set_secret(runner, "--tenant", "acme", "--integration", "github")
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip()
    assert len(secret) >= 40
    with app.app_context():
        row = db.session.query(IntegrationSecret).one()
        # Kept as given: HMAC verification needs the secret itself.
        assert (row.integration, row.name, row.secret) == ("github", "", secret)


def test_a_given_secret_replaces_the_old_one(app, runner, tenants):
    set_secret(runner, "--tenant", "acme", "--integration", "salesforce")
    given = "s" * 32
    assert set_secret(runner, "--tenant", "acme", "--integration", "salesforce", "--secret", given).exit_code == 0
    with app.app_context():
        assert [r.secret for r in db.session.query(IntegrationSecret)] == [given]


def test_webhooks_have_names_and_others_do_not(runner, tenants):
    assert set_secret(runner, "--tenant", "acme", "--integration", "webhook").exit_code != 0
    assert set_secret(runner, "--tenant", "acme", "--integration", "webhook", "--name", "Bad Name").exit_code != 0
    assert set_secret(runner, "--tenant", "acme", "--integration", "webhook", "--name", "billing").exit_code == 0
    assert set_secret(runner, "--tenant", "acme", "--integration", "webhook", "--name", "deploys").exit_code == 0
    assert set_secret(runner, "--tenant", "acme", "--integration", "github", "--name", "x").exit_code != 0


def test_refusals(runner, tenants):
    hubspot = set_secret(runner, "--tenant", "acme", "--integration", "hubspot")
    assert hubspot.exit_code != 0 and "client secret" in hubspot.output
    assert set_secret(runner, "--tenant", "acme", "--integration", "github", "--secret", "short").exit_code != 0
    assert set_secret(runner, "--tenant", "nope", "--integration", "github").exit_code != 0
    assert set_secret(runner, "--tenant", "acme", "--integration", "gitlab").exit_code != 0
    # Two tenants with one secret could not be told apart by a signature.
    shared = "a-shared-secret-of-some-length"
    assert set_secret(runner, "--tenant", "acme", "--integration", "github", "--secret", shared).exit_code == 0
    taken = set_secret(runner, "--tenant", "globex", "--integration", "github", "--secret", shared)
    assert taken.exit_code != 0 and "another tenant" in taken.output
    assert set_secret(runner, "--tenant", "globex", "--integration", "salesforce", "--secret", shared).exit_code == 0


def test_list_never_shows_secrets(runner, tenants):
    secret = set_secret(runner, "--tenant", "acme", "--integration", "github").stdout.strip()
    set_secret(runner, "--tenant", "globex", "--integration", "webhook", "--name", "deploys")
    listing = runner.invoke(args=["integrations", "list"])
    assert listing.exit_code == 0
    assert "acme\tgithub\t-" in listing.output and "globex\twebhook\tdeploys" in listing.output
    assert secret not in listing.output
    only = runner.invoke(args=["integrations", "list", "--tenant", "globex"]).output
    assert "acme" not in only
