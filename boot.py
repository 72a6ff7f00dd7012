# Board start-up, part 1 (runs first after every reset): join Wi-Fi from config.json.
# Never raises: a board that cannot join Wi-Fi still runs main.py and keeps its REPL.
try:
    from mqtt_controller import board

    board.boot()
except BaseException as e:  # noqa: B036 - even Ctrl-C or a broken install must reach the REPL
    print("boot.py:", repr(e))
