import { useQuery } from "@tanstack/react-query";
import { get } from "./api";
import type { Meta } from "./types";


/** Facts about the server (is sign-up open?), from the public GET /api/v1/meta. */
export const useMeta = () => useQuery({ queryKey: ["meta"], queryFn: () => get<Meta>("/meta"), staleTime: Infinity });
