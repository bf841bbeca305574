"""The composing planner end to end: scripted model (fake engine) -> real kernel, tools and
sandbox. Long plans, ``each`` over many files, a repair after a failed step, a refusal,
an ``llm`` step, the guards that hold even with ``yes``, and bad model output."""

from __future__ import annotations

import json

import pytest

from llmos.kernel import Kernel
from llmos.llm.fake import FakeEngine
from llmos.runs import StepStatus
from llmos.shell.runner import Runner
from llmos.shell.store import ShellStore
from llmos.tools.registry import default_registry


def steps(*s, answer="", more=False):
    d = {"steps": [{"tool": t, "args": a, **extra} for t, a, *rest in s for extra in [rest[0] if rest else {}]],
         "answer": answer}
    if more:
        d["more"] = True
    return json.dumps(d)


class Model:
    """Plans for constrained calls, in order (the last one repeats); ``text`` for free text
    (the ``llm`` steps). Records every request."""

    def __init__(self, plans: list[str], text: str = "A short summary.") -> None:
        self.plans = list(plans)
        self.text = text
        self.planned = 0
        self.free: list = []

    def __call__(self, req) -> str:
        if req.json_schema is not None and "anyOf" in req.json_schema:
            self.planned += 1
            return self.plans.pop(0) if len(self.plans) > 1 else self.plans[0]
        self.free.append(req)
        if req.json_schema is not None and "enum" in req.json_schema:
            return json.dumps(req.json_schema["enum"][0])
        return self.text


@pytest.fixture
async def run(config, tmp_path):
    made: dict = {}          # one kernel per test; each run answers with its own scripted model

    async def go(model: Model, request: str, ws, **kw):
        made["model"] = model
        if "kernel" not in made:
            engine = FakeEngine(lambda req: made["model"](req))
            made["kernel"] = await Kernel.boot(config, engines={"fake": engine}, tools=default_registry())
            made["store"] = ShellStore(config.home / "shell.db")
        runner = Runner(made["kernel"], store=made["store"], user="tester", confirm=kw.pop("confirm", None))
        return await runner.run(request, workdir=ws, **kw)

    yield go
    if "kernel" in made:
        await made["kernel"].shutdown()
        made["store"].close()


@pytest.fixture
def ws(tmp_path):
    d = tmp_path / "ws"
    d.mkdir()
    return d


async def test_a_five_step_plan(run, ws):
    (ws / "staff.csv").write_text("name,team,salary\nAna,Sales,50\nBo,Ops,40\nCy,Sales,70\n")
    plan = steps(
        ("files.mkdir", {"path": "out"}),
        ("data.filter", {"path": "staff.csv", "column": "team", "op": "==", "value": "Sales",
                         "save_to": "out/sales.csv"}),
        ("data.stat", {"path": "out/sales.csv", "column": "salary", "stat": "mean"}),
        ("data.groupby", {"path": "staff.csv", "by": "team", "column": "salary", "agg": "sum"}),
        ("files.write", {"path": "out/summary.txt",
                         "content": "mean sales salary: $step3.output.value\nlargest team: $step4.output.largest.key"}),
        answer="Sales average $step3.output.value; $step2.output.count people.")
    res = await run(Model([plan]), "split out the sales team and summarize salaries", ws, yes=True)
    assert res.status == "succeeded", res.answer
    assert len(res.steps) == 5 and all(s.status is StepStatus.SUCCEEDED for s in res.steps)
    assert (ws / "out" / "summary.txt").read_text() == "mean sales salary: 60\nlargest team: Sales"
    assert "60" in res.answer and "2 people" in res.answer


async def test_each_over_ten_files(run, ws):
    for i in range(10):
        (ws / f"n{i}.txt").write_text("x\n" * (i + 1))
    (ws / "other.md").write_text("no")
    plan = steps(("files.list", {"pattern": "*.txt"}),
                 ("files.count", {"path": "$item.name"}, {"each": "$step1.output.entries"}),
                 ("files.write", {"path": "counts.txt", "content": "$step2.output.lines"}),
                 answer="Counted $step2.output.count files.")
    res = await run(Model([plan]), "count the lines of every txt file into counts.txt", ws, yes=True)
    assert res.status == "succeeded", res.answer
    assert (ws / "counts.txt").read_text().split() == [str(i + 1) for i in range(10)]
    assert "10 files" in res.answer


async def test_a_failed_step_is_repaired(run, ws):
    (ws / "Notes.txt").write_text("a\nb\nc\n")
    first = steps(("files.count", {"path": "$step0.output"}), answer="x")   # invalid: retried at plan time
    bad = steps(("files.read", {"path": "notes-final.txt"}), answer="$step1.output.lines lines")
    repair = steps(("files.count", {"path": "Notes.txt"}), answer="Notes.txt has $step1.output.lines lines.")
    model = Model([first, bad, repair])
    res = await run(model, "how many lines in my notes", ws, yes=True)
    assert res.status == "succeeded", res.answer
    assert [s.status for s in res.steps] == [StepStatus.SUCCEEDED]
    assert [s.status for s in res.record.replaced] == [StepStatus.FAILED]
    assert res.answer == "Notes.txt has 3 lines."
    assert res.record.revisions == 1 and model.planned == 3
    # the repair prompt showed the error to the model
    assert any("revision 1" in n for n in res.record.notes)


async def test_revisions_are_bounded(run, ws):
    bad = steps(("files.read", {"path": "missing.txt"}), answer="$step1.output.text")
    res = await run(Model([bad]), "read it", ws, yes=True)
    assert res.status == "failed" and "missing.txt" in res.answer
    assert res.record.revisions == 3 and "after 3 revisions" in res.answer


async def test_refusal_changes_nothing(run, ws):
    (ws / "q3.txt").write_text("numbers")
    res = await run(Model(['{"refuse": "No tool here can send email."}']),
                    "email q3.txt to my boss", ws, yes=True)
    assert res.status == "failed" and "send email" in res.answer and res.steps == []
    assert [p.name for p in ws.iterdir()] == ["q3.txt"]


async def test_llm_summarize_step(run, ws):
    (ws / "report.txt").write_text("The database ran out of disk at 09:00. Checkout was down for 2 hours.")
    plan = steps(("files.read", {"path": "report.txt"}),
                 ("llm", {"task": "summarize", "instruction": "in one sentence", "text": "$step1.output.text"}),
                 ("files.write", {"path": "summary.txt", "content": "$step2.output"}),
                 answer="$step2.output")
    model = Model([plan], text="Disk filled up; checkout was down 2 hours.")
    res = await run(model, "summarize report.txt into summary.txt", ws, yes=True)
    assert res.status == "succeeded", res.answer
    assert (ws / "summary.txt").read_text() == "Disk filled up; checkout was down 2 hours."
    assert res.answer == "Disk filled up; checkout was down 2 hours."
    # the text went to the model as data in the user turn, through llm.generate
    assert "database ran out of disk" in model.free[0].messages[-1]["content"]


async def test_llm_step_saves_what_it_wrote(run, ws):
    (ws / "note.txt").write_text("The office is closed on Friday.")
    plan = steps(("files.read", {"path": "note.txt"}),
                 ("llm", {"task": "translate", "instruction": "to French", "text": "$step1.output.text",
                          "save_to": "note_fr.txt"}),
                 answer="Saved the translation to note_fr.txt.")
    res = await run(Model([plan], text="Le bureau est fermé vendredi."), "translate note.txt to French "
                    "as note_fr.txt", ws, yes=True)
    assert res.status == "succeeded", res.answer
    assert (ws / "note_fr.txt").read_text() == "Le bureau est fermé vendredi.\n"
    assert res.steps[1].summary.endswith("saved to note_fr.txt") and res.steps[1].risk == "write"


async def test_llm_save_to_over_a_file_the_request_does_not_name_asks_first(run, ws):
    (ws / "report.txt").write_text("Disk full at 09:00.")
    (ws / "keep.md").write_text("precious")
    plan = steps(("files.read", {"path": "report.txt"}),
                 ("llm", {"task": "summarize", "instruction": "one line", "text": "$step1.output.text",
                          "save_to": "keep.md"}),
                 answer="$step2.output")
    res = await run(Model([plan]), "summarize report.txt", ws, yes=True)
    assert res.status == "needs_confirmation" and "keep.md" in res.answer
    assert (ws / "keep.md").read_text() == "precious"


async def test_llm_save_to_outside_the_workspace_is_refused_before_anything_runs(run, ws):
    (ws / "a.txt").write_text("hello")
    plan = steps(("files.read", {"path": "a.txt"}),
                 ("llm", {"task": "write", "instruction": "a poem", "text": "$step1.output.text",
                          "save_to": "../../escape.txt"}))
    res = await run(Model([plan]), "write a poem from a.txt", ws, yes=True)
    assert res.status in ("failed", "denied") and not (ws.parent.parent / "escape.txt").exists()
    assert not any(s.status is StepStatus.SUCCEEDED for s in res.steps)


async def test_llm_table_mode_labels_each_row_into_a_new_column(run, ws):
    (ws / "feedback.csv").write_text("id,message\n1,Love it\n2,Broken again\n3,Fine\n")
    plan = steps(("llm", {"task": "classify", "instruction": "the message's sentiment", "path": "feedback.csv",
                          "column": "Message", "new_column": "sentiment", "labels": ["positive", "negative"],
                          "save_to": "feedback.csv"}),
                 answer="Labelled $step1.output.count messages.")
    model = Model([plan])
    res = await run(model, "add a sentiment column to feedback.csv", ws, yes=True)
    assert res.status == "succeeded", res.answer
    assert (ws / "feedback.csv").read_text().splitlines() == [
        "id,message,sentiment", "1,Love it,positive", "2,Broken again,positive", "3,Fine,positive"]
    assert "Labelled 3 messages" in res.answer
    # one generation per row, each on that row's text only
    assert [m.messages[-1]["content"].split("<<<\n")[1].split("\n>>>")[0] for m in model.free] == [
        "Love it", "Broken again", "Fine"]


async def test_llm_table_mode_names_a_missing_column(run, ws):
    (ws / "t.csv").write_text("id,text\n1,a\n")
    plan = steps(("llm", {"task": "summarize", "instruction": "short", "path": "t.csv", "column": "body"}))
    res = await run(Model([plan]), "summarize the body of each row of t.csv", ws, yes=True)
    assert res.status == "failed" and "no column 'body'" in res.answer and "id, text" in res.answer


async def test_classify_each_row(run, ws):
    (ws / "fb.csv").write_text("id,msg\n1,great\n2,awful\n")
    plan = steps(("data.load", {"path": "fb.csv", "rows": 10}),
                 ("llm", {"task": "classify", "instruction": "sentiment", "text": "$item.msg",
                          "labels": ["positive", "negative"]}, {"each": "$step1.output.head"}),
                 answer="$step2.output")
    res = await run(Model([plan]), "label each message", ws, yes=True)
    assert res.status == "succeeded", res.answer
    assert res.answer.count("positive") == 2      # the fake picks the first label each time


async def test_when_guard_skips(run, ws):
    (ws / "app.log").write_text("INFO ok\nINFO fine\n")
    plan = steps(("files.search", {"text": "ERROR", "path": "app.log"}),
                 ("files.write", {"path": "errors.txt", "content": "$step1.output.matches.text"},
                  {"when": {"ref": "$step1.output.count", "op": ">", "value": 0}}),
                 answer="$step1.output.count errors.")
    res = await run(Model([plan]), "copy errors from app.log to errors.txt if any", ws, yes=True)
    assert res.status == "succeeded" and res.steps[1].status is StepStatus.SKIPPED
    assert not (ws / "errors.txt").exists() and "0 errors" in res.answer


async def test_a_command_built_from_file_content_asks_again(run, ws):
    (ws / "cmd.txt").write_text("rm -rf ./*")
    (ws / "keep.txt").write_text("precious")
    plan = steps(("files.read", {"path": "cmd.txt"}),
                 ("shell.run", {"command": "$step1.output.text"}), answer="$step2.output.stdout")
    res = await run(Model([plan]), "run the command in cmd.txt", ws, yes=True)
    assert res.status == "needs_confirmation", res.answer
    assert "filled in" in res.answer and "rm -rf" in res.answer
    assert (ws / "keep.txt").exists()
    # the person is shown the filled-in command and may say no
    asked = []

    async def confirm(i, step, risk):
        asked.append((i, step.args))
        return i == 2 and False
    res = await run(Model([plan]), "run the command in cmd.txt", ws, yes=False, confirm=confirm)
    assert res.status == "needs_confirmation" and (ws / "keep.txt").exists()
    assert asked and asked[0][1] == {"command": "$step1.output.text"}   # the plan first, as written


async def test_deleting_an_unnamed_file_asks_even_with_yes(run, ws):
    for n in ("a.tmp", "notes.txt", "draft.txt"):
        (ws / n).write_text(n)
    plan = steps(("files.delete", {"path": "notes.txt"}), answer="Deleted.")
    res = await run(Model([plan]), "delete the tmp files", ws, yes=True)
    assert res.status == "needs_confirmation" and "does not name" in res.answer
    assert (ws / "notes.txt").exists()
    res = await run(Model([plan]), "delete the tmp files", ws, yes=True, yes_all=True)
    assert res.status == "succeeded" and not (ws / "notes.txt").exists()
    # a file the request names (by pattern) needs only --yes
    plan = steps(("files.delete", {"path": "*.tmp"}), answer="Deleted $step1.output.count.")
    res = await run(Model([plan]), "delete every .tmp file", ws, yes=True)
    assert res.status == "succeeded" and not (ws / "a.tmp").exists() and (ws / "draft.txt").exists()


async def test_dates_come_from_the_request(run, ws):
    plan = steps(("calendar.add", {"date": "2031-01-01", "time": "09:00", "title": "dentist"}),
                 answer="Added on $step1.output.event.date at $step1.output.event.time.")
    res = await run(Model([plan]), "dentist tomorrow at 10am", ws, yes=True)
    assert res.status == "succeeded", res.answer
    text = (ws / "calendar.txt").read_text()
    assert "10:00" in text and "2031" not in text


async def test_garbage_from_the_model_is_never_run(run, ws):
    (ws / "a.txt").write_text("x")
    res = await run(Model(['{"steps": [{"tool": "files.delete", "args": {"path": "a.txt"}}']), "hi", ws,
                    yes=True)
    assert res.status == "failed" and "valid plan" in res.answer and (ws / "a.txt").exists()


async def test_more_lets_the_planner_see_outputs_first(run, ws):
    (ws / "big.txt").write_text("x" * 500)
    (ws / "small.txt").write_text("y")
    look = steps(("files.list", {"sort": "size", "limit": 1}), answer="", more=True)
    rest = steps(("files.list", {"sort": "size", "limit": 1}),
                 ("files.count", {"path": "$step1.output.entries.0.name"}),
                 answer="The largest file has $step2.output.chars characters.")
    model = Model([look, rest])
    res = await run(model, "how many characters are in the largest file", ws, yes=True)
    assert res.status == "succeeded", res.answer
    assert res.answer == "The largest file has 500 characters." and res.record.revisions == 1
    # the unchanged first step was not run again
    assert len(res.steps) == 2 and len(res.steps[0].pids) <= 1
    assert "kept 1 step(s)" in " ".join(res.record.notes)


async def test_a_repair_may_rewrite_a_file_the_run_made(run, ws):
    (ws / "data.csv").write_text("a,b\n1,2\n")
    first = steps(("data.filter", {"path": "data.csv", "column": "a", "op": ">", "value": 0, "save_to": "out.csv"}),
                  ("files.read", {"path": "nope.txt"}), answer="done")
    fixed = steps(("data.filter", {"path": "data.csv", "column": "a", "op": ">", "value": 0, "save_to": "out.csv"}),
                  ("data.filter", {"path": "data.csv", "column": "b", "op": ">", "value": 0, "save_to": "out.csv"}),
                  answer="Saved $step2.output.count rows.")
    res = await run(Model([first, fixed]), "filter data.csv into out.csv", ws, yes=True)
    assert res.status == "succeeded", res.answer      # out.csv is the run's own: no second question
    assert res.answer == "Saved 1 rows."


async def test_a_named_file_the_run_did_not_make_is_said(run, ws):
    (ws / "numbers.txt").write_text("3\n1\n2\n")
    partial = steps(("text.sort", {"path": "numbers.txt"}), answer="Sorted.")
    model = Model([partial])
    res = await run(model, "sort numbers.txt and save them to sorted.txt", ws, yes=True)
    assert res.status == "succeeded" and not (ws / "sorted.txt").exists()
    assert "Not done" in res.answer and "sorted.txt" in res.answer
    # planned and planned again (kept), then asked once after the run to write what is missing
    assert model.planned == 3 and res.record.revisions == 1
    # the model adds the missing step when asked with the results in view
    whole = steps(("text.sort", {"path": "numbers.txt"}),
                  ("files.write", {"path": "sorted.txt", "content": "$step1.output.lines"}), answer="Sorted.")
    res = await run(Model([partial, partial, whole]), "sort numbers.txt and save them to sorted.txt", ws, yes=True)
    assert (ws / "sorted.txt").read_text().split() == ["1", "2", "3"] and "Not done" not in res.answer
    (ws / "sorted.txt").unlink()
    whole = steps(("text.sort", {"path": "numbers.txt", "save_to": "sorted.txt"}), answer="Sorted.")
    res = await run(Model([whole]), "sort numbers.txt and save them to sorted.txt", ws, yes=True)
    assert (ws / "sorted.txt").read_text().split() == ["1", "2", "3"] and "Not done" not in res.answer


async def test_a_named_file_made_inside_a_folder_counts_as_made(run, ws):
    plan = steps(("files.mkdir", {"path": "backup"}),
                 ("files.write", {"path": "backup/index.txt", "content": "a.md"}), answer="Done.")
    res = await run(Model([plan]), "create a folder backup and put an index.txt inside it", ws, yes=True)
    assert (ws / "backup" / "index.txt").exists() and "Not done" not in res.answer


async def test_each_over_files_in_a_folder_with_the_folder_written_twice(run, ws):
    """files.list names entries from the workspace root ("lists/a.txt"); a plan that puts the
    folder before $item.name again ("lists/$item.name") means the same file."""
    (ws / "lists").mkdir()
    (ws / "lists" / "a.txt").write_text("b\na\n")
    (ws / "lists" / "b.txt").write_text("d\nc\n")
    plan = steps(("files.list", {"path": "lists", "pattern": "*.txt"}),
                 ("text.sort", {"path": "lists/$item.name", "save_to": "lists/$item.name"},
                  {"each": "$step1.output.entries"}))
    res = await run(Model([plan]), "sort every txt file in lists/ in place", ws, yes=True)
    assert res.status == "succeeded", res.answer
    assert (ws / "lists" / "a.txt").read_text() == "a\nb\n"
    assert (ws / "lists" / "b.txt").read_text() == "c\nd\n"
    assert not (ws / "lists" / "lists").exists()


async def test_an_each_step_that_never_uses_its_item_is_planned_again(run, ws):
    (ws / "a.txt").write_text("x\n")
    (ws / "b.txt").write_text("y\ny\n")
    bad = steps(("files.list", {"pattern": "*.txt"}),
                ("files.count", {"path": "a.txt"}, {"each": "$step1.output.entries"}))
    good = steps(("files.list", {"pattern": "*.txt"}),
                 ("files.count", {"path": "$item.name"}, {"each": "$step1.output.entries"}))
    model = Model([bad, good])
    res = await run(model, "count the lines of every txt file", ws, yes=True)
    assert res.status == "succeeded", res.answer
    assert model.planned == 2
    assert any("$item" in n for n in res.record.notes)


async def test_without_an_answer_template_every_last_result_is_said(run, ws):
    """Steps whose results no later step reads are each the end of a branch: the answer
    says all of them, not only the last step's."""
    for name, n in (("a.txt", 1), ("b.txt", 2), ("c.txt", 3)):
        (ws / name).write_text("w\n" * n)
    plan = steps(("files.count", {"path": "a.txt"}), ("files.count", {"path": "b.txt"}),
                 ("files.count", {"path": "c.txt"}))
    res = await run(Model([plan]), "how many lines do a.txt, b.txt and c.txt have", ws, yes=True)
    assert res.status == "succeeded", res.answer
    for name, n in (("a.txt", 1), ("b.txt", 2), ("c.txt", 3)):
        assert f"{name}: {n} lines" in res.answer


async def test_an_indexed_reference_reads_the_element(run, ws):
    (ws / "s.csv").write_text("name,amount\nA,5\nB,9\n")
    plan = steps(("data.sort", {"path": "s.csv", "by": "amount", "descending": True}),
                 answer="The largest is $step1.output.rows[0].name with $step1.output.rows[0].amount.")
    res = await run(Model([plan]), "which row of s.csv has the largest amount", ws, yes=True)
    assert res.status == "succeeded", res.answer
    assert res.answer.startswith("The largest is B with 9")


async def test_a_refusal_copied_from_an_example_is_planned_again(run, ws):
    """A refusal that repeats a worked example's reason and shares no word with the request
    was copied, not reasoned: the planner asks once more."""
    from llmos.shell.planner import load_examples
    copied = next(e.plan["refuse"] for e in load_examples() if "refuse" in e.plan)
    plan = steps(("todo.add", {"item": "water the plants"}))
    model = Model([json.dumps({"refuse": copied}), plan])
    res = await run(model, "put water the plants on my todo list", ws, yes=True)
    assert res.status == "succeeded", res.answer
    assert "water the plants" in (ws / "todo.txt").read_text()


async def test_a_refusal_that_speaks_of_the_request_stands(run, ws):
    from llmos.shell.planner import load_examples
    copied = next(e.plan["refuse"] for e in load_examples() if "refuse" in e.plan)
    model = Model([json.dumps({"refuse": copied}), steps(("files.write", {"path": "x.txt", "content": "no"}))])
    res = await run(model, "order two pizzas from the shop for me", ws, yes=True)
    assert res.status == "failed" and model.planned == 1
    assert not (ws / "x.txt").exists()


async def test_a_calculator_step_that_only_states_a_number_is_planned_again(run, ws):
    (ws / "amounts.txt").write_text("100\n170\n")
    guessed = steps(("calc.eval", {"expression": "270"}), answer="The total is $step1.output.value.")
    good = steps(("text.numbers", {"path": "amounts.txt"}), answer="The total is $step1.output.sum.")
    model = Model([guessed, good])
    res = await run(model, "what do the amounts in amounts.txt add up to", ws, yes=True)
    assert res.status == "succeeded" and model.planned == 2
    assert "270" in res.answer and any("no tool computed" in n for n in res.record.notes)


# the files each worked example of examples/tools.json speaks of, as a person might have them
EXAMPLE_FILES = {
    "count-words": {"drafts/cover.md": "one two three\nfour five\n"},
    "each-append": {"docs/setup.md": "# s\n", "docs/usage.md": "# u\n", "todo.txt": "x\n"},
    "unique-in-place": {"emails.txt": "a@x.org\nb@x.org\nA@x.org\n"},
    "convert-table": {"members.csv": "id,name,joined\n1,Ann,2020\n2,Bo,2021\n"},
    "search-folder": {"mail/a.txt": "about the refund\n", "mail/b.txt": "hi\n", "mail/c.txt": "Refund done\n"},
    "todo-done": {"todo.txt": "- [ ] pay the gas bill\n- [ ] call mum\n"},
    "stat-where-write": {"stock.csv": "item,colour,price,qty\npen,blue,1,5\ncup,red,2,3\nhat,blue,5,2\n"},
    "remind": {},
    "best-under-condition": {"bikes.json": json.dumps([
        {"model": "Aero", "price": 900, "weight_kg": 8.1, "gears": 16},
        {"model": "Brisk", "price": 700, "weight_kg": 9.4, "gears": 21},
        {"model": "Cruz", "price": 650, "weight_kg": 11.0, "gears": 18}])},
    "when-number": {"spend.csv": "date,what,cost\n2026-01-02,rent,250\n2026-01-05,food,80\n"},
}
EXAMPLE_SAYS = {"count-words": "5 words in 2 lines", "each-append": "2 files", "unique-in-place": "Removed 1",
                "convert-table": "2 rows", "search-folder": "mail/a.txt\nmail/c.txt",
                "todo-done": "pay the gas bill", "stat-where-write": "add up to 7", "remind": "stretch",
                "best-under-condition": "is Brisk (9.4 kg, 21 gears)", "when-number": "Total spent: 330"}


@pytest.mark.parametrize("eid", sorted(EXAMPLE_FILES))
async def test_a_worked_example_does_what_it_teaches(run, ws, eid):
    """The model copies the examples' shapes, so each must run and say the right thing."""
    from llmos.shell.planner import load_examples
    e = next(x for x in load_examples() if x.id == eid)
    for name, text in EXAMPLE_FILES[eid].items():
        (ws / name).parent.mkdir(parents=True, exist_ok=True)
        (ws / name).write_text(text)
    res = await run(Model([json.dumps(e.plan)]), e.request, ws, yes=True)
    assert res.status == "succeeded", res.answer
    assert EXAMPLE_SAYS[eid] in res.answer
    if eid == "each-append":
        assert (ws / "docs" / "usage.md").read_text() == "# u\nLast checked: June\n"
    if eid == "unique-in-place":
        assert (ws / "emails.txt").read_text() == "a@x.org\nb@x.org\n"
    if eid == "stat-where-write":
        assert (ws / "blue_qty.txt").read_text() == "7"
    if eid == "when-number":
        assert (ws / "alert.txt").read_text() == "Warning: spending is 330, over 300."


def test_every_example_in_tools_json_is_run_above():
    from importlib import resources

    from llmos.shell.planner import load_examples
    ids = [e["id"] for e in json.loads(resources.files("llmos.shell").joinpath("examples/tools.json").read_text())]
    assert sorted(ids) == sorted(EXAMPLE_FILES) and {e.id for e in load_examples()} >= set(ids)


async def test_writing_no_rows_is_planned_again(run, ws):
    (ws / "pets.csv").write_text("name,kind\nRex,dog\n")
    empty = steps(("data.write", {"path": "pets.json", "rows": []}))
    good = steps(("data.load", {"path": "pets.csv", "save_to": "pets.json"}))
    model = Model([empty, good])
    res = await run(model, "make a json copy of pets.csv called pets.json", ws, yes=True)
    assert res.status == "succeeded" and model.planned == 2
    assert json.loads((ws / "pets.json").read_text()) == [{"name": "Rex", "kind": "dog"}]


async def _count_run(config, ws, engine):
    kernel = await Kernel.boot(config, engines={"fake": engine}, tools=default_registry())
    try:
        return await Runner(kernel, user="tester").run("count the lines of a.txt", workdir=ws, yes=True)
    finally:
        await kernel.shutdown()


@pytest.mark.parametrize("room", [400, 100])
async def test_a_plan_asked_for_near_the_end_of_the_context_gets_the_room_left(config, ws, room):
    """A long prompt leaves less than the plan's usual reply: the planner takes what is
    left when that is enough for a plan, and says the engine's error when it is not."""
    from llmos.llm.fake import _prompt_text

    (ws / "a.txt").write_text("one\n")
    plan = steps(("files.count", {"path": "a.txt"}), answer="$step1.output.lines line")
    probe = FakeEngine(lambda req: plan, context_length=100_000)
    await _count_run(config, ws, probe)
    size = probe.count_tokens(_prompt_text(probe.requests[0])) + room
    model = Model([plan])
    engine = FakeEngine(lambda req: model(req), context_length=size)
    res = await _count_run(config, ws, engine)
    if room >= 256:
        assert res.status == "succeeded" and res.answer.startswith("1 line"), res.answer
        assert engine.requests[-1].params.max_tokens == room - 1
    else:
        assert res.status == "failed" and "context" in res.answer
