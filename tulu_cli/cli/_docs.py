"""docs/options.md from the option models: `python -m tulu_cli.cli._docs > docs/options.md`."""

from __future__ import annotations

from tulu_cli.cli._schema import generated_commands, options_table


def options_page() -> str:
    """Every generated command's options as one markdown table each, in the CLI's order."""
    from tulu_cli.cli.main import app

    lines = [
        "# Options of every command",
        "",
        "Generated from the option models (`tulu_cli/options/`) by `python -m tulu_cli.cli._docs > docs/options.md`;",
        "a test fails when this page and the models disagree. Each flag is also a `--config` file key",
        "(the field name, `-` or `_`); flags given on the command line win over the file.",
    ]
    for path, cls, extras in generated_commands(app):
        lines += ["", f"## tulu {' '.join(path)}", "", *options_table(cls)]
        if extras is not None:
            lines += options_table(extras, config_keys=False)[2:]  # flags that steer the command, listed with the rest
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(options_page(), end="")
