"""campaign.classify: masked / tolerable / critical outcomes against a golden run."""

from __future__ import annotations

import numpy as np
import pytest

from fi_campaign.classify import (
    COUNTED,
    CRITICAL_SDC,
    DUE,
    MASKED,
    NOT_INJECTED,
    OUTCOMES,
    TOLERABLE_SDC,
    TOP1,
    Judge,
    JudgeError,
    Outcome,
    check_judge,
    classify,
    classify_batch,
    judge_batch,
    top1,
)


@pytest.fixture
def golden() -> np.ndarray:
    # 3 images x 4 classes; golden top-1 is class 2, 0, 3
    return np.array(
        [[0.1, -1.0, 3.0, 0.5], [2.5, 1.0, -0.5, 0.0], [0.0, 0.2, 0.4, 0.9]],
        dtype=np.float32,
    )


def test_golden_top1(golden):
    assert top1(golden).tolist() == [2, 0, 3]


def test_bit_identical_is_masked(golden):
    o = classify(golden, golden.copy())
    assert o == Outcome(outcome=MASKED, images_changed=0, nan=False, max_abs_diff=0.0)  # no image singled out


def test_one_ulp_difference_is_not_masked_without_tolerance(golden):
    faulty = golden.copy()
    faulty[1, 1] = np.nextafter(faulty[1, 1], np.float32(np.inf))
    o = classify(golden, faulty)
    assert o.outcome == TOLERABLE_SDC
    assert o.images_changed == 0
    assert o.max_abs_diff == pytest.approx(float(np.spacing(np.float32(1.0))))


def test_differs_but_same_top1_is_tolerable(golden):
    faulty = golden.copy()
    faulty[0, 0] += 1.5  # 1.6 < 3.0: class 2 still wins
    faulty[2, 1] -= 7.0
    o = classify(golden, faulty)
    assert o.outcome == TOLERABLE_SDC
    assert o.images_changed == 0
    assert not o.nan
    assert o.max_abs_diff == pytest.approx(7.0)


def test_changed_top1_is_critical_and_counted(golden):
    faulty = golden.copy()
    faulty[0, 1] = 10.0  # image 0: 2 -> 1
    faulty[2, 0] = 1.0  # image 2: 3 -> 0
    faulty[1, 2] += 0.25  # image 1 differs but keeps class 0
    o = classify(golden, faulty)
    assert o.outcome == CRITICAL_SDC
    assert o.images_changed == 2
    assert not o.nan
    assert o.max_abs_diff == pytest.approx(11.0)


def test_all_images_changed(golden):
    faulty = golden.copy()
    faulty[:, 1] = 100.0
    o = classify(golden, faulty)
    assert (o.outcome, o.images_changed) == (CRITICAL_SDC, 3)


def test_tolerance_is_honoured(golden):
    faulty = golden.copy()
    faulty[1, 3] += np.float32(2.0**-6)  # exactly representable difference
    assert classify(golden, faulty, tolerance=1e-3).outcome == TOLERABLE_SDC
    assert classify(golden, faulty, tolerance=2.0**-6).outcome == MASKED  # within = <=
    assert classify(golden, faulty, tolerance=0.1).outcome == MASKED
    # a top-1 change is critical whatever the tolerance
    faulty[1, 1] = 2.5 + 2.0**-4
    o = classify(golden, faulty, tolerance=1.0)
    assert (o.outcome, o.images_changed) == (CRITICAL_SDC, 1)


def test_nan_is_flagged_and_changes_the_class(golden):
    faulty = golden.copy()
    faulty[1, 3] = np.nan  # not the top logit; NaN has no order, so the class is lost
    o = classify(golden, faulty)
    assert o.nan
    assert o.outcome == CRITICAL_SDC
    assert o.images_changed == 1
    assert o.max_abs_diff == np.inf


def test_nan_is_critical_even_with_a_large_tolerance(golden):
    faulty = golden.copy()
    faulty[0, 2] = np.nan
    o = classify(golden, faulty, tolerance=1e30)
    assert (o.outcome, o.images_changed, o.nan) == (CRITICAL_SDC, 1, True)


def test_top1_of_a_nan_row_is_minus_one():
    logits = np.array([[1.0, np.nan, 0.0], [0.0, 1.0, 5.0]])
    assert top1(logits).tolist() == [-1, 2]


def test_positive_inf_in_the_winning_class_is_flagged_tolerable(golden):
    faulty = golden.copy()
    faulty[0, 2] = np.inf  # class 2 already wins image 0
    o = classify(golden, faulty)
    assert o.nan
    assert o.outcome == TOLERABLE_SDC
    assert o.images_changed == 0
    assert o.max_abs_diff == np.inf


def test_positive_inf_in_another_class_is_flagged_critical(golden):
    faulty = golden.copy()
    faulty[2, 1] = np.inf
    o = classify(golden, faulty, tolerance=1e30)
    assert o.nan
    assert (o.outcome, o.images_changed) == (CRITICAL_SDC, 1)


def test_negative_inf_in_a_losing_class_is_flagged(golden):
    faulty = golden.copy()
    faulty[1, 2] = -np.inf
    o = classify(golden, faulty, tolerance=1e30)
    assert o.nan
    assert o.outcome == TOLERABLE_SDC  # finite tolerance cannot make an Inf masked


@pytest.mark.parametrize("shape", [(3, 5), (2, 4), (4,)])
def test_shape_mismatch_raises(golden, shape):
    with pytest.raises(ValueError, match="shape"):
        classify(golden, np.zeros(shape, np.float32))


def test_batch_shape_mismatch_raises(golden):
    with pytest.raises(ValueError):
        classify_batch(golden[None], np.stack([golden, golden]))


def test_batch_classifies_each_injection_independently(golden):
    tolerable = golden.copy()
    tolerable[2, 0] = -3.0
    critical = golden.copy()
    critical[1, 1] = 9.0
    nan = golden.copy()
    nan[0, 0] = np.nan
    faulty = np.stack([golden, tolerable, critical, nan, golden])
    out = classify_batch(np.stack([golden] * 5), faulty)
    assert [o.outcome for o in out] == [MASKED, TOLERABLE_SDC, CRITICAL_SDC, CRITICAL_SDC, MASKED]
    assert [o.images_changed for o in out] == [0, 0, 1, 1, 0]
    assert [o.nan for o in out] == [False, False, False, True, False]
    assert out[1].max_abs_diff == pytest.approx(3.0)


def test_outcome_vocabulary():
    assert set(OUTCOMES) == {MASKED, TOLERABLE_SDC, CRITICAL_SDC, DUE, NOT_INJECTED}
    assert NOT_INJECTED not in COUNTED
    assert set(COUNTED) == {MASKED, TOLERABLE_SDC, CRITICAL_SDC, DUE}


def test_the_classes_shown_are_the_named_image_s(golden):
    faulty = golden.copy()
    faulty[2, 0] = 1.0  # image 2: 3 -> 0
    faulty[0, 3] += 0.5  # image 0 differs, keeps class 2
    assert [
        (o.golden_top1, o.faulty_top1)
        for o in classify_batch(np.stack([golden] * 3), np.stack([faulty] * 3), shown=np.array([0, 1, 2]))
    ] == [(2, 2), (0, 0), (3, 0)]


def test_without_a_named_image_the_first_changed_one_is_shown_else_the_first_that_differs(golden):
    changed = golden.copy()
    changed[0, 3] += 0.5  # image 0 differs first but keeps its class
    changed[2, 1] = 5.0  # image 2: 3 -> 1, the class change the critical SDC rests on
    differs = golden.copy()
    differs[1, 2] += 0.25
    nan = golden.copy()
    nan[1, 0] = np.nan
    within = golden.copy()
    within[0, 0] += np.float32(2.0**-6)
    out = classify_batch(np.stack([golden] * 5), np.stack([changed, differs, nan, within, golden]), tolerance=0.1)
    assert [(o.outcome, o.golden_top1, o.faulty_top1) for o in out] == [
        (CRITICAL_SDC, 3, 1),
        (TOLERABLE_SDC, 0, 0),
        (CRITICAL_SDC, 0, -1),
        (MASKED, None, None),
        (MASKED, None, None),
    ]


def test_an_outcome_without_outputs_keeps_its_reason_and_no_faulty_class():
    o = Outcome.without_outputs(DUE, "timeout", golden_top1=4)
    assert (o.outcome, o.images_changed, o.nan, o.max_abs_diff) == (DUE, 0, False, None)
    assert (o.golden_top1, o.faulty_top1, o.reason) == (4, None, "timeout")
    with pytest.raises(TypeError):
        Outcome(MASKED, 0)  # type: ignore[call-arg]  # the wrong call is the point: records are built with keywords


# --- judges for any network (issue 25) ---------------------------------------------------------


def test_top1_judge_is_classify_batch(golden):
    faulty = golden.copy()
    faulty[1, 1] = 9.0
    faulty[2, 2] += 0.01
    g, f = np.stack([golden] * 2), np.stack([faulty, golden])
    assert judge_batch(TOP1, g, f, 0.0) == classify_batch(g, f, 0.0)


def test_topk_is_critical_only_when_the_golden_class_leaves_the_top_k(golden):
    second = golden.copy()
    second[0, 3] = 3.5  # image 0: class 2 is now second
    third = second.copy()
    third[0, 0] = 3.2  # ... and third
    nan = golden.copy()
    nan[1, 3] = np.nan
    out = judge_batch(Judge(kind="topk", k=2), np.stack([golden] * 3), np.stack([second, third, nan]))
    assert [(o.outcome, o.images_changed) for o in out] == [
        (TOLERABLE_SDC, 0),
        (CRITICAL_SDC, 1),
        (CRITICAL_SDC, 1),
    ]
    assert (out[1].golden_top1, out[1].faulty_top1) == (2, 3)  # top-1 classes of the changed image
    assert out[2].nan


def test_per_position_counts_the_positions_whose_class_changed():
    rng = np.random.default_rng(0)
    golden = rng.standard_normal((2, 5, 3)).astype(np.float32)  # 2 inputs x 5 positions x 3 classes
    top = golden.argmax(-1)
    faulty = golden.copy()
    for pos in (1, 4):  # input 1: two positions change class
        faulty[1, pos, (top[1, pos] + 1) % 3] = 10.0
    faulty[0, 2] += 1e-3  # input 0: values differ, classes kept
    out = judge_batch(Judge(kind="per_position"), golden[None], faulty[None], shown=np.array([1]))[0]
    assert (out.outcome, out.images_changed) == (CRITICAL_SDC, 2)
    assert (out.golden_top1, out.faulty_top1) == (int(top[1, 1]), int((top[1, 1] + 1) % 3))  # first changed position
    kept = judge_batch(Judge(kind="per_position"), golden[None], (golden + 1e-3)[None])[0]
    assert (kept.outcome, kept.images_changed) == (TOLERABLE_SDC, 0)


def test_values_is_never_critical_and_keeps_the_tolerance():
    golden = np.zeros((3, 4, 4), dtype=np.float32)
    big, small = golden.copy(), golden.copy()
    big[1, 2, 3] = 100.0
    small[0, 0, 0] = 1e-4
    out = judge_batch(Judge(kind="values"), np.stack([golden] * 3), np.stack([big, small, golden]), tolerance=1e-3)
    assert [o.outcome for o in out] == [TOLERABLE_SDC, MASKED, MASKED]
    assert out[0].max_abs_diff == 100.0 and out[0].images_changed == 0


def test_a_judge_function_decides_per_input_and_is_checked():
    def by_sum(golden, faulty):
        return ["critical_sdc" if abs(f.sum() - g.sum()) > 1 else "masked" for g, f in zip(golden, faulty, strict=True)]

    golden = np.zeros((1, 3, 2), dtype=np.float32)
    faulty = golden.copy()
    faulty[0, 1] = [2.0, 0.0]
    faulty[0, 2] = [0.5, 0.0]
    out = judge_batch(Judge(kind="function", function=by_sum, name="j.py:by_sum"), golden, faulty)[0]
    assert (out.outcome, out.images_changed, out.max_abs_diff) == (CRITICAL_SDC, 1, 2.0)
    for wrong, words in (
        (lambda g, f: ["masked"], "returned 1 values for 3 inputs"),
        (lambda g, f: "masked", "returned a str for 3 inputs"),
        (lambda g, f: ["masked", "fine", "masked"], "returned 'fine'"),
        (lambda g, f: 1 / 0, "raised ZeroDivisionError"),
    ):
        with pytest.raises(JudgeError, match=words):
            judge_batch(Judge(kind="function", function=wrong, name="j.py:f"), golden, faulty)


def test_check_judge_names_what_the_outputs_lack():
    with pytest.raises(ValueError, match="top1 needs one score per class"):
        check_judge(TOP1, np.zeros((4, 5, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="topk 7 asks for more classes than the 3"):
        check_judge(Judge(kind="topk", k=7), np.zeros((4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="per_position needs outputs of shape N x positions x classes"):
        check_judge(Judge(kind="per_position"), np.zeros((4, 3), dtype=np.float32))
    check_judge(Judge(kind="values"), np.zeros((4, 3, 8, 8), dtype=np.float32))
