"""The pure TSV reader of the OCR engine: lines with their words, confidences 0-1, boxes scaled
back to the page and rounded to integers; empty words and wordless lines dropped."""

from __future__ import annotations

from iiifsrv.agents.tesseract import parse_tsv

HEAD = (
    "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext"
)
TSV = "\n".join(
    [
        HEAD,
        "1\t1\t0\t0\t0\t0\t0\t0\t710\t156\t-1\t",
        "4\t1\t1\t1\t1\t0\t50\t61\t610\t34\t-1\t",
        "5\t1\t1\t1\t1\t1\t50\t61\t105\t30\t96.5\tHello",
        "5\t1\t1\t1\t1\t2\t171\t61\t124\t34\t90\tworld,",
        "5\t1\t1\t1\t1\t3\t300\t61\t10\t30\t95\t ",
        "4\t1\t1\t1\t2\t0\t50\t120\t100\t30\t-1\t",
        "5\t1\t1\t1\t2\t1\t50\t120\t100\t30\t-1\t",
        "4\t1\t2\t1\t1\t0\t50\t200\t301\t31\t-1\t",
        "5\t1\t2\t1\t1\t1\t50\t200\t301\t31\t101\tEnd.",
    ]
)


def test_lines_words_confidences() -> None:
    lines = parse_tsv(TSV)
    assert [(ln.text, ln.box, ln.confidence) for ln in lines] == [
        ("Hello world,", (50, 61, 610, 34), 0.932),
        ("End.", (50, 200, 301, 31), 1.0),
    ]
    assert [w.confidence for w in lines[0].words] == [0.965, 0.9]


def test_boxes_scaled_back_to_the_page() -> None:
    (first, _second) = parse_tsv(TSV, scale=0.5)
    assert first.box == (100, 122, 1220, 68)
    assert first.words[0].box == (100, 122, 210, 60)
