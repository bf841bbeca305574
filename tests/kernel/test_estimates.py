"""Learned costs: EWMA with a count and a prior, back-off to general keys, SQLite persistence."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmos.errors import InvalidArgument, JournalError
from llmos.kernel.estimates import PRIOR_S, PRIOR_TOKENS, SCHEMA_VERSION, Estimates

KEY = ("alice", "tool:shell", "smollm2-135m")


def test_prior_with_no_data_and_zero_confidence():
    tok, sec, conf = Estimates().predict(KEY)
    assert (tok, sec, conf) == (PRIOR_TOKENS, PRIOR_S, 0.0)
    assert Estimates(prior=(10, 1)).predict(KEY)[:2] == (10.0, 1.0)


def test_observations_pull_the_prediction_and_raise_confidence():
    e = Estimates()
    confs = []
    for _ in range(20):
        e.observe(KEY, 40, 0.5)
        tok, sec, conf = e.predict(KEY)
        confs.append(conf)
    assert tok == pytest.approx(40, rel=0.02) and sec == pytest.approx(0.5, rel=0.05)
    assert confs == sorted(confs) and 0.9 < confs[-1] < 1.0


def test_ewma_follows_drift():
    e = Estimates()
    for _ in range(30):
        e.observe(KEY, 100, 10.0)
    for _ in range(30):
        e.observe(KEY, 10, 1.0)
    tok, sec, _ = e.predict(KEY)
    assert tok < 15 and sec < 1.5
    row = e.get(KEY)
    assert row is not None and row.n == 60


def test_first_observations_are_a_plain_average():
    e = Estimates(alpha=0.2)
    for x in (10, 20, 30):
        e.observe(KEY, x, x / 10)
    assert e.get(KEY).tokens == pytest.approx(20)     # 1/n steps while 1/n > alpha


def test_back_off_to_more_general_keys():
    e = Estimates()
    for _ in range(10):
        e.observe(("bob", "tool:shell", "smollm2-135m"), 500, 20.0)
    # alice never ran it: she inherits what bob taught (*, tool:shell, model)
    tok, sec, conf = e.predict(KEY)
    assert tok > 300 and sec > 10 and conf > 0.5
    # another kind stays at the prior
    assert e.predict(("alice", "llm", "smollm2-135m"))[2] == 0.0
    # alice's own data wins over bob's once she has some
    for _ in range(10):
        e.observe(KEY, 20, 1.0)
    assert e.predict(KEY)[0] < 100


def test_persists_in_its_own_table_through_a_path(tmp_path):
    db = tmp_path / "state.db"
    e = Estimates(db)
    for _ in range(5):
        e.observe(KEY, 64, 2.0)
    e.close()
    again = Estimates(db)
    assert again.predict(KEY) == pytest.approx(e.predict(KEY))
    assert again.get(KEY).n == 5
    con = sqlite3.connect(db)
    assert con.execute("SELECT version FROM estimates_schema").fetchall() == [(SCHEMA_VERSION,)]
    assert con.execute("SELECT count(*) FROM estimates").fetchone()[0] == 4   # key + 3 generalizations
    con.close()
    again.close()


def test_shares_a_callers_connection_and_leaves_commit_to_it():
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE other (x)")
    e = Estimates(con)
    e.observe(KEY, 1, 0.1)
    assert con.in_transaction                      # the caller's group commit decides
    con.commit()
    assert Estimates(con).get(KEY).n == 1
    assert con.execute("SELECT count(*) FROM other").fetchone()[0] == 0


def test_newer_schema_is_refused(tmp_path):
    db = tmp_path / "state.db"
    Estimates(db).close()
    con = sqlite3.connect(db)
    con.execute("UPDATE estimates_schema SET version = ?", (SCHEMA_VERSION + 1,))
    con.commit()
    con.close()
    with pytest.raises(JournalError):
        Estimates(db)


@pytest.mark.parametrize("key", [("a", "b"), ("a", "", "m"), "a/b/c", ("a", "b", 3)])
def test_bad_key_names_the_field(key):
    with pytest.raises(InvalidArgument) as err:
        Estimates().observe(key, 1, 1.0)  # type: ignore[arg-type]
    assert err.value.field == "key"


@pytest.mark.parametrize("tokens, seconds, field", [(-1, 1.0, "observation.tokens"),
                                                    (1, float("inf"), "observation.seconds"),
                                                    (True, 1.0, "observation.tokens")])
def test_bad_observation_names_the_field(tokens, seconds, field):
    with pytest.raises(InvalidArgument) as err:
        Estimates().observe(KEY, tokens, seconds)
    assert err.value.field == field


def test_bad_store_and_settings():
    with pytest.raises(InvalidArgument):
        Estimates(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        Estimates(alpha=0)
    with pytest.raises(InvalidArgument):
        Estimates(prior=(-1, 1.0))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1e4), st.floats(0, 1e3)), min_size=1, max_size=40))
def test_prediction_stays_within_the_range_of_data_and_prior(obs):
    e = Estimates()
    for tok, sec in obs:
        e.observe(KEY, tok, sec)
    tok, sec, conf = e.predict(KEY)
    toks = [t for t, _ in obs] + [PRIOR_TOKENS]
    secs = [s for _, s in obs] + [PRIOR_S]
    assert min(toks) - 1e-6 <= tok <= max(toks) + 1e-6
    assert min(secs) - 1e-6 <= sec <= max(secs) + 1e-6
    assert 0 < conf < 1
