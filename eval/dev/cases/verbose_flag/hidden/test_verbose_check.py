from greet import main


def test_verbose(capsys):
    assert main(["--verbose", "--name", "ada"]) == 0
    assert capsys.readouterr().out == "greeting ada\nhello ada\n"


def test_quiet_unchanged(capsys):
    main(["--name", "ada"])
    assert capsys.readouterr().out == "hello ada\n"
