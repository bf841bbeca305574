from greet import main


def test_default(capsys):
    assert main([]) == 0
    assert capsys.readouterr().out == "hello world\n"


def test_name(capsys):
    main(["--name", "ada"])
    assert capsys.readouterr().out == "hello ada\n"
