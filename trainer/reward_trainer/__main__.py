from .cli import main

if __name__ == "__main__":  # not when a spawned training rank imports the main module
    main()
