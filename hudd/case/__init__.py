"""The user's data: case folders, image folders and the one image loader, and the labels an engineer types."""
