from report import main


def test_total(tmp_path, capsys):
    p = tmp_path / "s.csv"
    p.write_text("item,amount\napple,3\npear,4.5\n")
    main([str(p), "--total"])
    assert capsys.readouterr().out == "apple: 3\npear: 4.5\ntotal: 7.5\n"
