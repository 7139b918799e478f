import { useQuery } from "@tanstack/react-query";
import { get } from "./api";

export interface Meta {
  version: string;
  signup: boolean;
}

/** Facts about the server (is sign-up open?), from the public GET /api/v1/meta. */
export const useMeta = () => useQuery({ queryKey: ["meta"], queryFn: () => get<Meta>("/meta"), staleTime: Infinity });
