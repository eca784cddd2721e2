from common.access import can_write, is_admin, user_role


def roles(request):
    user = getattr(request, "user", None)
    return {
        "role": user_role(user),
        "can_write": can_write(user),
        "is_admin": is_admin(user),
    }
