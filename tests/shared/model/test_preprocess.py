from shared.model.preprocess import MAX_CHARS, preprocess, text_digest

# The first training post of 20 Newsgroups, as the tutorial shows it.
TUTORIAL_POST = (
    "From: lerxst@wam.umd.edu (where's my thing)\n"
    "Subject: WHAT car is this!?\n"
    "Nntp-Posting-Host: rac3.wam.umd.edu\n"
    "Organization: University of Maryland, College Park\n"
    "Lines: 15\n\n"
    " I was wondering if anyone out there could enlighten me on this car I saw\n"
)


def test_tutorial_post_loses_addresses_names_and_header_labels() -> None:
    cleaned = preprocess(TUTORIAL_POST)
    assert cleaned.startswith(" WHAT car is this!?\nNntp-Posting-Host: rac3.wam.umd.edu\n")
    assert "@" not in cleaned
    assert "where's my thing" not in cleaned
    assert "From: " not in cleaned and "\nSubject: " not in cleaned
    assert "enlighten me on this car" in cleaned


def test_long_posts_are_cut_at_5000_characters() -> None:
    assert len(preprocess("word " * 3000)) == MAX_CHARS == 5000


def test_digest_is_stable_and_distinguishes_texts() -> None:
    assert text_digest("a") == text_digest("a")
    assert text_digest("a") != text_digest("b")
    assert len(text_digest("a")) == 64


def test_an_address_is_only_tried_where_a_run_of_its_characters_starts() -> None:
    """Tried from every position, a long run of letters with no "@" costs its length squared (a post of
    200,000 letters took minutes); a match can only start where the run does, so the text is the same."""
    import random
    import re

    from shared.model.preprocess import _EMAIL

    assert _EMAIL.match("bob@example.org", 1) is None  # not from inside the run
    assert _EMAIL.match("bob@example.org", 0) is not None
    unanchored = re.compile(r"[\w\.-]+@[\w\.-]+")
    rng = random.Random(0)
    for _ in range(2000):
        text = "".join(rng.choice("ab.-@ (x)é") for _ in range(rng.randint(0, 40)))
        assert _EMAIL.sub("", text) == unanchored.sub("", text), text
