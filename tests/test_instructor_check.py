"""The checker: every diagnosis on the assignment's problem and on variants, a class of 30 students with planted
mistakes, answer files (JSON, CSV) and the command line, including its error paths."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlplab.cli import main
from mlplab.errors import MlplabError
from mlplab.instructor import (
    MISTAKE_IDS,
    answer_key,
    answer_template,
    check_answers,
    check_class,
    make_variant,
    make_variants,
    mistaken_values,
)
from mlplab.instructor.files import read_answers, write_class_report
from mlplab.instructor.key import agrees, round2, to_rounded
from mlplab.twolayer.problem import load_problem


def _flat(v):
    return [x for e in v for x in _flat(e)] if isinstance(v, list) else [v]


def _fractions(value):
    if isinstance(value, list):
        return [_fractions(v) for v in value]
    return value if isinstance(value, int) else Fraction(repr(value))


def _wrong(value, exact) -> bool:
    return any((v != e) if isinstance(e, int) else not agrees(v, e) for v, e in zip(_flat(value), _flat(exact)))


def plant(problem, mistake_ids, answers=None):
    """The key's rounded answers with every item a mistake changes replaced by that mistake's (rounded) value,
    as a student who makes the mistakes would write them; returns (answers, planted items)."""
    key = answer_key(problem)
    answers = dict(answers if answers is not None else key.rounded())
    planted = {}
    for mistake_id in mistake_ids:
        for name, alternatives in mistaken_values(problem)[mistake_id].items():
            # what the student writes: the mistaken value rounded; planted where that is wrong
            wrong = [to_rounded(value) for _, value in alternatives
                     if _wrong(_fractions(to_rounded(value)), key.values[name])]
            if wrong:
                answers[name] = wrong[0]
                planted[name] = mistake_id
    return answers, planted


PROBLEMS = {"assignment": load_problem(), "variant-21-0": make_variant(21, 0).problem,
            "variant-22-3": make_variant(22, 3).problem}


@pytest.mark.parametrize("problem_id", PROBLEMS)
@pytest.mark.parametrize("mistake_id", MISTAKE_IDS)
def test_every_mistake_is_named_on_every_item_it_changes(mistake_id, problem_id):
    problem = PROBLEMS[problem_id]
    answers, planted = plant(problem, [mistake_id])
    assert planted, f"{mistake_id} changes nothing on {problem_id}"
    result = check_answers(problem, answers)
    by_name = {i.name: i for i in result.items}
    for name in planted:
        assert by_name[name].status == "wrong"
        assert mistake_id in by_name[name].mistakes, (name, by_name[name].diagnosis)
    assert all(i.status == "right" for i in result.items if i.name not in planted)


def test_the_assignments_own_mistakes_on_its_problem():
    """Hand-picked numbers: the loss of eq. (6) as printed, the double sigmoid, and dL/db2 without 2/N."""
    p = load_problem()
    result = check_answers(p, {"loss.bce.relu-sigmoid": 0.59, "grad.mse_b2.identity": -4.1,
                               "grad.mse_b2.sigmoid": 0.1, "loss.mse.relu-sigmoid": 0.7})
    by_name = {i.name: i for i in result.items}
    assert by_name["loss.bce.relu-sigmoid"].mistakes == ("eq6-sign",)
    assert by_name["grad.mse_b2.identity"].diagnosis == "missing-2-over-n (summed, no 2/N)"
    assert by_name["grad.mse_b2.sigmoid"].status == "right"
    assert by_name["loss.mse.relu-sigmoid"].status == "wrong" and by_name["loss.mse.relu-sigmoid"].diagnosis is None
    assert result.count("missing") == len(result.items) - 4
    assert result.score == pytest.approx(1 / len(result.items))


def test_lists_are_graded_per_entry():
    p = load_problem()
    exact = answer_key(p).values["table2.relu-sigmoid.y_hat"]
    near = [float(v) for v in exact]
    near[0] += 0.009  # still within 0.01 of the exact value, though it rounds differently
    assert round2(Fraction(repr(near[0]))) != round2(exact[0])

    def item(given):
        return next(i for i in check_answers(p, {"table2.relu-sigmoid.y_hat": given}).items
                    if i.name == "table2.relu-sigmoid.y_hat")

    assert item(near).status == "right"
    near[1] += 0.05
    assert item(near).status == "wrong" and item(near).given == near


def test_a_class_of_30_students_with_planted_mistakes():
    variants = make_variants(10, 2030)
    plans = [[m] for m in MISTAKE_IDS for _ in range(3)]  # 24 students, each mistake three times
    plans += [["eq6-sign", "gradients-accumulated"], ["missing-2-over-n", "double-sigmoid"],
              ["sigmoid-derivative-at-z2", "eq6-sign"], ["rounded-early", "gradients-accumulated"], [], []]
    sheets, planted_by_student = [], {}
    for k, plan in enumerate(plans):
        v = variants[k % len(variants)]
        answers, _ = plant(v.problem, plan)
        if k == len(plans) - 1:
            answers = {}  # handed in nothing
        student = f"student{k + 1:02d}"
        sheets.append((student, v.problem, answers))
        planted_by_student[student] = plan
    assert len(sheets) == 30
    report = check_class(sheets)
    for student, result in zip(report.students, report.results):
        named = set(result.mistakes())
        for mistake_id in planted_by_student[student]:
            assert mistake_id in named, (student, mistake_id, result.mistakes())
        if not planted_by_student[student]:
            assert result.count("wrong") == 0
    assert report.results[-2].score == 1.0 and report.results[-1].score == 0.0
    counts = report.mistake_counts()
    assert all(counts[m] >= 3 for m in MISTAKE_IDS)
    grid = report.grid()
    assert len(grid) == len(answer_key(variants[0].problem).values) + 1 and grid[-1][0] == "score"
    assert all(len(row) == 31 for row in grid)


def test_class_report_files(tmp_path):
    problem = make_variant(21, 0).problem
    sheets = [("ana", problem, plant(problem, ["eq6-sign"])[0]), ("bo", problem, plant(problem, ["wrong-pair"])[0])]
    paths = write_class_report(check_class(sheets), tmp_path)
    assert {p.name for p in paths} == {"class.csv", "class.json", "mistakes.png"}
    lines = (tmp_path / "class.csv").read_text().splitlines()
    assert lines[0] == "item,ana,bo" and lines[-1].startswith("score,")
    saved = json.loads((tmp_path / "class.json").read_text())
    assert saved["mistake_counts"]["eq6-sign"] >= 1 and saved["mistake_counts"]["wrong-pair"] >= 1
    assert (tmp_path / "mistakes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_names_and_non_numbers_are_user_errors():
    p = load_problem()
    with pytest.raises(MlplabError, match=r"unknown item names: 'loss\.mse\.relu-sigmod'"):
        check_answers(p, {"loss.mse.relu-sigmod": 0.5})
    with pytest.raises(MlplabError, match=r"loss\.mse\.relu-sigmoid: expected a number, got 'about a half'"):
        check_answers(p, {"loss.mse.relu-sigmoid": "about a half"})
    with pytest.raises(MlplabError, match=r"classes.relu-relu\[2\]: expected a number"):
        check_answers(p, {"classes.relu-relu": [1, True, 0, 1]})
    with pytest.raises(MlplabError, match="are for variant 'v007-abcd', but the problem is 'seed'"):
        check_answers(p, {"variant": "v007-abcd", "loss.mse.relu-sigmoid": 0.49})


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 10**9))
def test_every_mistake_is_named_on_random_variants(seed):
    problem = make_variant(seed, 0).problem
    for mistake_id in MISTAKE_IDS:
        answers, planted = plant(problem, [mistake_id])
        assert planted  # the variant's fairness guarantees that every mistake shows
        by_name = {i.name: i for i in check_answers(problem, answers).items}
        assert all(mistake_id in by_name[name].mistakes for name in planted), mistake_id


def test_answer_files_json_and_csv(tmp_path):
    p = load_problem()
    csv_file = tmp_path / "ana.csv"
    csv_file.write_text("name,value\nvariant,seed\nloss.mse.relu-sigmoid,0.49\ntable2.relu-relu.a1[1][1],1.5\n"
                        "table2.relu-relu.a1[4][2],0\nclasses.relu-relu,\"[1, 1, 0, 1]\"\n")
    answers = read_answers(csv_file)
    assert answers["table2.relu-relu.a1"] == [["1.5", None], [None, None], [None, None], [None, "0"]]
    result = {i.name: i.status for i in check_answers(p, answers).items}
    assert result["loss.mse.relu-sigmoid"] == "right" and result["classes.relu-relu"] == "right"
    assert result["table2.relu-relu.a1"] == "wrong"  # entries left empty are not right
    json_file = tmp_path / "bo.json"
    json_file.write_text(json.dumps({**answer_template(p), "loss.mse.relu-sigmoid": 0.5}))
    assert read_answers(json_file)["loss.mse.relu-sigmoid"] == Fraction(1, 2)
    (tmp_path / "bad.json").write_text("{\"loss.mse.relu-sigmoid\": 0.5,,}")
    with pytest.raises(MlplabError, match="not valid JSON"):
        read_answers(tmp_path / "bad.json")
    (tmp_path / "bad.csv").write_text("loss.mse.relu-sigmoid,0.5,extra\n")
    with pytest.raises(MlplabError, match="line 1: expected `name,value`, got 3 cells"):
        read_answers(tmp_path / "bad.csv")
    with pytest.raises(MlplabError, match="does not exist"):
        read_answers(tmp_path / "nobody.json")


# --- command line ------------------------------------------------------------------------------------------

def test_cli_variants_keys_check_and_class(tmp_path, capsys):
    out = tmp_path / "variants"
    assert main(["variants", "--count", "2", "--seed", "9", "--out", str(out), "--no-pdf"]) == 0
    ids = [v["id"] for v in json.loads((out / "variants.json").read_text())["variants"]]
    assert ids == [v.id for v in make_variants(2, 9)]
    for vid in ids:
        problem = load_problem(out / vid / "problem.json")
        assert json.loads((out / vid / "key.json").read_text()) == answer_key(problem).rounded()
        assert "| `grad.mse_b2.identity` |" in (out / vid / "key.md").read_text()
        assert not (out / vid / "key.pdf").exists()
    again = tmp_path / "again"
    assert main(["variants", "--count", "2", "--seed", "9", "--out", str(again), "--no-pdf"]) == 0
    assert (again / ids[1] / "key.json").read_bytes() == (out / ids[1] / "key.json").read_bytes()
    capsys.readouterr()

    problem_file = out / ids[0] / "problem.json"
    assert main(["check", "--template", "--problem", str(problem_file)]) == 0
    template = json.loads(capsys.readouterr().out)
    assert template["variant"] == ids[0] and template["grad.mse_b2.sigmoid"] is None

    problem = load_problem(problem_file)
    answers, planted = plant(problem, ["double-sigmoid"])
    sheet = tmp_path / "sheet.json"
    sheet.write_text(json.dumps({"variant": ids[0], **answers}))
    assert main(["check", "--problem", str(problem_file), str(sheet), "--format", "json"]) == 0
    graded = json.loads(capsys.readouterr().out)
    assert graded["score"] == pytest.approx(1 - len(planted) / len(graded["items"]))
    assert {i["name"] for i in graded["items"] if i["diagnosis"] == "double-sigmoid"} == set(planted)
    assert set(graded["items"][0]) == {"name", "status", "expected", "given", "diagnosis"}
    assert main(["check", "--problem", str(problem_file), str(sheet)]) == 0
    assert "double-sigmoid" in capsys.readouterr().out

    answers_dir = tmp_path / "answers"
    answers_dir.mkdir()
    (answers_dir / f"{ids[0]}.json").write_text(json.dumps(plant(problem, ["eq6-sign"])[0]))
    other = load_problem(out / ids[1] / "problem.json")
    (answers_dir / "carla.json").write_text(json.dumps({"variant": ids[1], **plant(other, ["rounded-early"])[0]}))
    assert main(["check", "--class", str(answers_dir), "--variants", str(out)]) == 0
    text = capsys.readouterr().out
    assert "eq6-sign" in text and "rounded-early" in text
    header = (answers_dir / "report" / "class.csv").read_text().splitlines()[0]
    assert header == f"item,carla,{ids[0]}"
    assert (answers_dir / "report" / "mistakes.png").is_file()


@pytest.mark.parametrize("argv,message", [
    (["variants", "--count", "0", "--seed", "1", "--out", "{tmp}/v"], "number of variants must be at least 1"),
    (["variants", "--count", "2", "--seed", "1", "--out", "{tmp}/v", "--like", "{tmp}/none.json"],
     "problem file"),
    (["check", "--problem", "{tmp}/none.json", "{tmp}/a.json"], "does not exist"),
    (["check", "{tmp}/missing.json"], "answer file"),
    (["check", "{tmp}/corrupt.json"], "not valid JSON"),
    (["check", "{tmp}/unknown.json"], "unknown item names"),
    (["check", "{tmp}/text.csv"], "expected a number, got 'lots'"),
    (["check"], "no answer file given"),
    (["check", "--class", "{tmp}/empty"], "holds no .json or .csv answer files"),
    (["check", "--class", "{tmp}/orphans"], "no problem for x.json"),
])
def test_cli_errors_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    (tmp_path / "corrupt.json").write_text("{")
    (tmp_path / "unknown.json").write_text('{"loss.mse.nope": 1}')
    (tmp_path / "text.csv").write_text("loss.mse.relu-sigmoid,lots\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "orphans").mkdir()
    (tmp_path / "orphans" / "x.json").write_text("{}")
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mlplab: error: ") and message in err and "\n" not in err
    assert not (tmp_path / "v").exists()  # nothing half-written


def test_cli_class_against_one_problem_file(tmp_path, capsys):
    problem = load_problem()
    problem_file = tmp_path / "assignment.json"
    problem_file.write_text(problem.to_text())
    folder = tmp_path / "class"
    folder.mkdir()
    (folder / "dana.json").write_text(json.dumps(plant(problem, ["sigmoid-derivative-at-z2"])[0]))
    (folder / "eli.csv").write_text("name,value\ngrad.mse_b2.identity,-4.1\n")
    out = tmp_path / "report"
    assert main(["check", "--class", str(folder), "--problem", str(problem_file), "--out", str(out),
                 "--format", "json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["dana"] == pytest.approx(56 / 57) and scores["eli"] == 0.0
    saved = json.loads((out / "class.json").read_text())
    assert saved["mistake_counts"] == {"missing-2-over-n": 1, "sigmoid-derivative-at-z2": 1}
