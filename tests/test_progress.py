"""Progress lines: a live bar on a terminal, plain lines in a log."""

import io

from xbn._progress import Progress


def test_in_a_log_it_writes_plain_lines_at_every_tenth():
    log = io.StringIO()
    bar = Progress(157, "epoch 2/15", stream=log, interactive=False)
    for step in range(1, 158):
        bar.update(step, loss=f"{1 / step:.4f}")
    bar.finish(loss="0.0064", lr="0.025")
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and "\x1b" not in log.getvalue()  # no redraws, no colours
    assert len(lines) == 10  # 9 tenths on the way and the final line
    assert all(line.startswith("epoch 2/15  ") and len(line) < 120 for line in lines)
    assert lines[0].startswith("epoch 2/15  16/157 [==") and "left" in lines[0]
    assert lines[-1].startswith("epoch 2/15  157/157 [========================]") and lines[-1].endswith(
        "loss 0.0064  lr 0.025"
    )


def test_on_a_terminal_it_redraws_one_line():
    screen = io.StringIO()
    bar = Progress(4, "checking", stream=screen, interactive=True)
    for step in range(1, 5):
        bar.update(step)
    bar.finish()
    text = screen.getvalue()
    assert text.count("\r") == 5 and text.count("\n") == 1


def test_disabled_writes_nothing():
    quiet = io.StringIO()
    bar = Progress(10, "x", stream=quiet, enabled=False)
    bar.update(5)
    bar.finish()
    assert quiet.getvalue() == ""
