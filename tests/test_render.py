"""render_message: fields first (with a fallback name), then spintax; values never read as spintax."""
import pytest


def render(db, template, name="Aisyah", phone="60123456789"):
    return db.execute("SELECT render_message(%s, %s, %s) AS t", [template, name, phone]).fetchone()["t"]


def test_fields_are_filled_case_insensitively(db):
    assert render(db, "Hi {name}, {NAME} { Name }! Call {phone}") == "Hi Aisyah, Aisyah Aisyah! Call 60123456789"


@pytest.mark.parametrize("name", [None, "", "   "])
def test_missing_name_falls_back(db, name):
    assert render(db, "Hi {name}", name=name) == "Hi Customer"


def test_spintax_picks_each_option(db):
    seen = {render(db, "{Hi|Hello|Hey} {name}") for _ in range(200)}
    assert seen == {"Hi Aisyah", "Hello Aisyah", "Hey Aisyah"}


def test_nested_spintax(db):
    seen = {render(db, "{a {b|c}|d}") for _ in range(300)}
    assert seen == {"a b", "a c", "d"}


def test_fields_inside_spintax_survive(db):
    seen = {render(db, "{Hi {name}|Dear {name}}") for _ in range(100)}
    assert seen == {"Hi Aisyah", "Dear Aisyah"}


def test_values_are_not_parsed_as_spintax(db):
    assert render(db, "{Hi|Hi} {name}", name="A|{B|C}") == "Hi A|{B|C}"


def test_unknown_braces_and_plain_text_stay(db):
    assert render(db, "Promo {code} 50% off") == "Promo {code} 50% off"
    assert render(db, "no fields") == "no fields"
    assert render(db, None) is None


def test_empty_options_are_allowed(db):
    assert {render(db, "x{|!}") for _ in range(100)} == {"x", "x!"}
