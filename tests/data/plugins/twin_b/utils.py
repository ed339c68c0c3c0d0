WHO = "twin-b"
