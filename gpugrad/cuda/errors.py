"""placeholder"""
def check():
    pass
