"""Music transcription: audio in, notes out (Basic Pitch, Transkun), and the notes as a Standard MIDI File."""
