"""The argument lists built for flyctl, and how they are quoted."""

from pathlib import Path, PureWindowsPath

from tasks import flyctl


def test_reads_pass_the_app_explicitly_and_ask_for_json():
    assert flyctl.status("octo-api") == ["status", "--app", "octo-api", "--json"]
    assert flyctl.secrets_list("octo-api") == [
        "secrets",
        "list",
        "--app",
        "octo-api",
        "--json",
    ]
    assert flyctl.releases("octo-api") == ["releases", "--app", "octo-api", "--json"]
    assert flyctl.whoami() == ["auth", "whoami", "--json"]
    assert flyctl.version() == ["version", "--json"]


def test_deploy_names_app_and_config_and_builds_remotely():
    args = flyctl.deploy("octo-worker", Path("fly.worker.toml"))

    assert args == [
        "deploy",
        "--app",
        "octo-worker",
        "--config",
        "fly.worker.toml",
        "--remote-only",
        "--strategy",
        "rolling",
        "--wait-timeout",
        "5m",
        "--yes",
    ]


def test_deploy_with_image_appends_the_image_ref():
    args = flyctl.deploy("a", Path("fly.toml"), image="registry.fly.io/a:deployment-1")

    assert args[-2:] == ["--image", "registry.fly.io/a:deployment-1"]


def test_secrets_import_stages_by_default_and_takes_no_values():
    assert flyctl.secrets_import("a") == ["secrets", "import", "--app", "a", "--stage"]
    assert flyctl.secrets_import("a", stage=False) == [
        "secrets",
        "import",
        "--app",
        "a",
    ]


def test_logs_streams_json_and_can_read_the_buffer_once():
    assert flyctl.logs("w") == ["logs", "--app", "w", "--json"]
    assert flyctl.logs("w", no_tail=True)[-1] == "--no-tail"


def test_render_quotes_a_path_with_a_space_for_posix_shells():
    config = "/home/nic/My Projects/OCTO/fly.toml"

    line = flyctl.render("flyctl", ["deploy", "--config", config], windows=False)

    assert line == "flyctl deploy --config '/home/nic/My Projects/OCTO/fly.toml'"


def test_render_quotes_a_path_with_a_space_for_cmd_exe():
    config = str(PureWindowsPath(r"C:\Users\nicwi\Documents\My Projects\OCTO\fly.toml"))
    program = r"C:\Users\nicwi\.fly\bin\flyctl.exe"

    line = flyctl.render(program, ["deploy", "--config", config], windows=True)

    assert line == (
        r"C:\Users\nicwi\.fly\bin\flyctl.exe deploy --config "
        r'"C:\Users\nicwi\Documents\My Projects\OCTO\fly.toml"'
    )
