"""``calico-trace lab``: list, show, walk through and check the teaching labs."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import click

from tracer.errors import InputError
from tracer.lab.checks import Outcome, run_checks
from tracer.lab.spec import Lab, find_labs, load_lab
from tracer.lab.show import command_argv, command_text, lab_line, render_lab_text

# The labs ship beside the bundled scenarios (scenarios/labs/NN-slug).
DEFAULT_LABS = Path(__file__).resolve().parents[2] / "scenarios" / "labs"

labs_option = click.option("--labs", "labs_dir", type=click.Path(file_okay=False),
                           default=str(DEFAULT_LABS), show_default="scenarios/labs",
                           help="Directory holding the labs (NN-slug directories).")


@click.group()
def lab() -> None:
    """Teaching labs: a scenario, a story, commands to run, questions and checks."""


@lab.command("list")
@labs_option
def list_labs(labs_dir: str) -> None:
    """Every lab with its number, level and title."""
    for path in find_labs(Path(labs_dir)):
        click.echo(lab_line(load_lab(path)))


@lab.command()
@click.argument("number", type=int)
@labs_option
@click.option("--output", type=click.Choice(["text", "html"]), default="text",
              show_default=True, help="html: one self-contained page on standard output.")
def show(number: int, labs_dir: str, output: str) -> None:
    """Show lab NUMBER: story, steps (commands), questions and answers, checks."""
    chosen = pick(labs_dir, number)
    if output == "html":
        from tracer.lab.page import render_lab_html
        click.echo(render_lab_html(chosen, run_checks(chosen)), nl=False)
    else:
        click.echo(render_lab_text(chosen), nl=False)


@lab.command()
@click.argument("number", type=int)
@labs_option
@click.option("--no-run", is_flag=True, help="Show the commands without running them.")
def run(number: int, labs_dir: str, no_run: bool) -> None:
    """Walk through lab NUMBER: each step's command runs, then each question waits for your
    answer and says whether it is right."""
    chosen = pick(labs_dir, number)
    root = click.get_current_context().find_root().command
    click.secho(f"Lab {chosen.number:02d}: {chosen.title}  ({chosen.level})", bold=True)
    click.echo("\n" + chosen.story + "\n")
    for i, step in enumerate(chosen.steps, 1):
        click.secho(f"Step {i}. {step.say}", bold=True)
        if step.run:
            click.echo(f"$ {command_text(chosen, step.run)}")
            if not no_run:
                code, text = run_step(root, chosen, step.run)
                click.echo(text, nl=False)
        click.prompt("(enter to go on)", default="", show_default=False)
    right = 0
    for i, question in enumerate(chosen.questions, 1):
        reply = click.prompt(f"Q{i}. {question.ask}\n>", prompt_suffix=" ")
        if question.is_right(reply):
            right += 1
            click.secho("Right.", fg="green")
        else:
            click.secho(f"Not quite. The answer: {question.answer}", fg="yellow")
        if question.explain:
            click.echo(question.explain)
    click.echo(f"\n{right} of {len(chosen.questions)} right. "
               f"`calico-trace lab check {chosen.number}` checks the lab's verdicts.")


@lab.command()
@click.argument("number", type=int, required=False)
@labs_option
def check(number: int | None, labs_dir: str) -> None:
    """Check lab NUMBER (default: every lab): each check's verdict, reason, deciding and
    selecting policies and path, every "fix it" change, and that every step's command runs.
    Exit status 1 if anything differs."""
    labs = [pick(labs_dir, number)] if number is not None else [
        load_lab(path) for path in find_labs(Path(labs_dir))]
    root = click.get_current_context().find_root().command
    failed = 0
    for chosen in labs:
        outcomes = run_checks(chosen)
        steps = [(step.run, *run_step(root, chosen, step.run)) for step in chosen.steps
                 if step.run]
        bad = [o for o in outcomes if not o.passed] + [s for s in steps if s[1] != 0]
        failed += len(bad)
        mark = "ok  " if not bad else "FAIL"
        click.echo(f"{mark} lab {chosen.number:02d} {chosen.slug}: {len(outcomes)} checks, "
                   f"{len(steps)} step commands")
        for item in bad:
            if isinstance(item, Outcome):
                for problem in item.problems:
                    click.echo(f"       {item.label()}: {problem}")
            else:
                click.echo(f"       step `{command_text(chosen, item[0])}` exited {item[1]}: "
                           f"{item[2].strip().splitlines()[-1] if item[2].strip() else ''}")
    if failed:
        raise click.exceptions.Exit(1)


def pick(labs_dir: str, number: int) -> Lab:
    for path in find_labs(Path(labs_dir)):
        name = path.name.partition("-")[0]
        if name.isdigit() and int(name) == number:
            return load_lab(path)
    raise InputError(f"no lab {number} (calico-trace lab list shows them)", file=labs_dir)


def run_step(root: click.Command, chosen: Lab, run: str) -> tuple[int, str]:
    """Run a step's calico-trace command in this process through the command group the lab
    command belongs to; its exit status and what it printed (stdout and stderr)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            root.main(command_argv(chosen, run), prog_name="calico-trace",
                      standalone_mode=False)
            code = 0
        except InputError as err:
            out.write(f"calico-trace: error: {err}\n")
            code = 2
        except click.ClickException as err:
            err.show(out)
            code = err.exit_code
        except click.exceptions.Exit as err:
            code = err.exit_code
    return code, out.getvalue()
