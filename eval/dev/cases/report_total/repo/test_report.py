from report import main


def test_rows(tmp_path, capsys):
    p = tmp_path / "s.csv"
    p.write_text("item,amount\napple,3\npear,4.5\n")
    main([str(p)])
    assert capsys.readouterr().out == "apple: 3\npear: 4.5\n"
